import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from braincode.pipeline.config import load_config
from braincode.pipeline.context import Step, StepContext
from braincode.pipeline.runner import MANIFEST, clean_temporaries, run_step


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "output": "out", "data": {"format": "synthetic", "root": "d"}, "subjects": ["subj01"],
        "features": [{"model": "minilm", "text": True}],
    }))
    cfg = load_config(path)
    return StepContext(cfg, "subj01", cfg.output / "subj01")


def test_step_runs_once_then_skips_and_reruns_when_input_changes(ctx):
    calls = []

    def first(c, out):
        calls.append("first")
        (out / "a.txt").write_text(str(len(calls)))

    def second(c, out):
        calls.append("second")
        (out / "b.txt").write_text(c.step_dir("first").joinpath("a.txt").read_text() + "!")

    steps = {"first": Step(first, ("data",)), "second": Step(second, ("data",), ("first",))}
    cfg = replace(ctx.config, steps=("first", "second"))
    ctx = replace(ctx, config=cfg)
    assert run_step(ctx, "first", steps["first"]) is True
    assert run_step(ctx, "second", steps["second"]) is True
    assert run_step(ctx, "first", steps["first"]) is False
    assert run_step(ctx, "second", steps["second"]) is False
    assert calls == ["first", "second"]
    manifest = json.loads((ctx.step_dir("second") / MANIFEST).read_text())
    assert set(manifest["inputs"]) == {"first"} and "b.txt" in manifest["outputs"]
    # a changed upstream output invalidates the downstream step
    (ctx.step_dir("first") / MANIFEST).unlink()
    assert run_step(ctx, "first", steps["first"]) is True
    assert (ctx.step_dir("first") / "a.txt").read_text() == "3"
    assert run_step(ctx, "second", steps["second"]) is True
    assert (ctx.step_dir("second") / "b.txt").read_text() == "3!"


def test_failed_step_leaves_no_output_or_temporary(ctx):
    def broken(c, out):
        (out / "half.txt").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_step(ctx, "broken", Step(broken, ("data",)))
    assert not ctx.step_dir("broken").exists()
    assert [p.name for p in ctx.subject_dir.iterdir()] == []


def test_clean_temporaries_removes_leftovers_of_a_killed_run(ctx):
    (ctx.subject_dir / ".tmp-fit-1234").mkdir(parents=True)
    (ctx.subject_dir / ".tmp-fit-1234" / "x.npy").write_text("x")
    (ctx.subject_dir / "fit").mkdir()
    assert clean_temporaries(ctx.subject_dir) == 1
    assert [p.name for p in ctx.subject_dir.iterdir()] == ["fit"]
