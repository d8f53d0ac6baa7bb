"""Hostile inputs get one clear message and exit status 2, fast; `braincode --help` answers in under a second."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from braincode.atomic import folder_lock
from braincode.cli import main
from braincode.data.synthetic import make_synthetic

FIT = ["fit", "--subject", "subj01", "--model", "open_clip:tiny-vit@random", "--grid", "2"]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "braincode", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, check=False)


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    return time.perf_counter() - start


def test_help_answers_in_under_a_second():
    assert "synthesize" in run_cli("--help").stdout  # also warms the file cache
    python = min(_seconds([sys.executable, "-c", "pass"]) for _ in range(3))
    braincode = min(_seconds([sys.executable, "-m", "braincode", "--help"]) for _ in range(3))
    assert braincode - python < 1.0, (braincode, python)  # braincode's own share, whatever the machine's load
    code = ("import sys, braincode.cli; braincode.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'pandas', 'numpy', 'dask') if m in sys.modules))")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]", "building the parser imported heavy libraries"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("one"), n_train=1, n_test=2, seed=0)


def test_fit_refuses_one_fold_and_a_one_image_dataset(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    assert main([*FIT, "--data", str(tiny), "--cv", "1", "--out", str(out)]) == 2
    assert "at least 2 folds" in capsys.readouterr().err
    assert main([*FIT, "--data", str(tiny), "--banded", "--out", str(out)]) == 2
    assert "--banded needs at least two feature spaces" in capsys.readouterr().err
    assert main([*FIT, "--data", str(tiny), "--cache", str(tmp_path / "c"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 training samples are too few for 5-fold cross-validation" in err and "Traceback" not in err
    assert not out.exists()


def test_a_second_writer_to_the_same_folder_gets_a_clear_error(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    with folder_lock(out):
        assert main([*FIT, "--data", str(tiny), "--cache", str(tmp_path / "c"), "--out", str(out)]) == 2
    assert "another braincode command is writing this folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("encoding", "message"),
    [({"cv": "three"}, "`encoding.cv` must be an integer"), ({"cv": 1}, "`encoding.cv` is too small"),
     ({"alphas": [1, "abc"]}, "`encoding.alphas[1]` must be a number")],
)
def test_run_refuses_bad_yaml_values_with_the_line(tmp_path, capsys, encoding, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "output": "o", "data": {"format": "synthetic"},
                                    "subjects": ["subj01"], "features": [{"model": "minilm", "text": True}],
                                    "encoding": encoding}, sort_keys=False))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{path}:" in err and "Traceback" not in err


def test_an_unreachable_scheduler_fails_fast_with_one_message(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "output": "o", "data": {"format": "synthetic"},
                                    "subjects": ["subj01"], "features": [{"model": "minilm", "text": True}]}))
    start = time.perf_counter()
    assert main(["run", str(path), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the dask scheduler" in err and "tcp://127.0.0.1:9" in err


def test_report_into_and_from_folders_with_non_utf8_names(tmp_path):
    results = Path(os.fsdecode(bytes(tmp_path) + b"/fit-\xfe"))
    results.mkdir()
    (results / "scores.csv").write_text("hemisphere,vertex,r,r2\nlh,0,0.1,0.01\nrh,1,0.2,0.04\n")
    out = Path(os.fsdecode(bytes(tmp_path) + b"/report-\xff"))
    done = run_cli("--quiet", "report", str(results), "--out", str(out), PYTHONIOENCODING="utf-8")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "report-\\udcff" in done.stdout
    assert "fit-\ufffd" in (out / "report.html").read_text()
