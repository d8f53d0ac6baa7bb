"""The batch pipeline end to end: two subjects in parallel, a SIGKILL mid-run, and the report in Chromium."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

CONFIG = {
    "name": "e2e",
    "data": {"format": "synthetic", "root": "data", "n_train": 60, "n_test": 12, "seed": 3},
    "subjects": ["subj01", "subj02"],
    "features": [
        {"model": "open_clip:tiny-vit@random", "layers": ["blocks.1", "pooled"], "grid": 2},
        {"model": "minilm", "text": True},
    ],
    "encoding": {"cv": 3, "alphas": [1, 100, 10000]},
}


def braincode(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "BRAINCODE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "braincode.cli", "--quiet", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def run_to_end(config: Path) -> str:
    proc = braincode("run", str(config))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def outputs(root: Path) -> dict[str, bytes]:
    files = {}
    for subject in CONFIG["subjects"]:
        for p in sorted((root / subject).rglob("*")):
            if p.is_file() and p.name != "manifest.json":
                files[str(p.relative_to(root))] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("clean")
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output": "out"}))
    run_to_end(path)
    return base / "out"


def test_two_subjects_run_in_parallel_workers(clean_run):
    spans = []
    for s in CONFIG["subjects"]:
        steps = {p.parent.name: json.loads(p.read_text()) for p in (clean_run / s).glob("*/manifest.json")}
        assert set(steps) == {"validate", "extract", "fit", "evaluate", "report"}
        spans.append((steps["extract"]["started"], steps["report"]["finished"], steps["fit"]["pid"]))
    assert spans[0][2] != spans[1][2], "the subjects should be fitted in different worker processes"
    first, second = sorted(spans)
    assert second[0] < first[1], "the two subjects' runs should overlap in time"
    for s in CONFIG["subjects"]:
        pred = np.load(clean_run / s / "fit" / "lh_pred_test.npy")
        assert pred.shape[0] == CONFIG["data"]["n_test"] and pred.dtype == np.float32


def test_sigkill_then_rerun_gives_identical_outputs(clean_run, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output": "out"}))
    proc = braincode("run", str(path), start_new_session=True)
    marker = tmp_path / "out" / "subj01" / "extract" / "manifest.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "subj01" / "report").exists()
    rerun = run_to_end(path)
    assert "up to date" in rerun  # finished steps were not redone
    # quiet by default: one line per step and a summary, no dask logs or library warnings
    lines = rerun.strip().splitlines()
    assert all(line.startswith("[") for line in lines[:-1]) and lines[-1].startswith("e2e: "), rerun
    assert "Nanny" not in rerun and "Warning" not in rerun
    assert outputs(tmp_path / "out") == outputs(clean_run)
    assert not list((tmp_path / "out").rglob(".tmp-*")), "temporary folders were left behind"
    assert not list((tmp_path / "out").rglob(".*.tmp*"))


def test_report_renders_in_headless_chromium_with_surface_maps(clean_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian package chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "shot.png"
    html = clean_run / "subj01" / "report" / "report.html"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1200,1400", f"--screenshot={shot}", html.as_uri()]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    console_errors = [line for line in done.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line]
    assert not console_errors, console_errors
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    hot = (rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > 150)  # the surface map's hot colours on a grey brain
    assert hot.sum() > 200, f"no surface map visible in the screenshot ({hot.sum()} coloured pixels)"
