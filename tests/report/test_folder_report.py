"""`braincode report` on a pipeline subject folder (written as the pipeline writes it), and its page in Chromium."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from braincode.report.fsaverage import MESH_DIR_ENV

IDS = [f"train-{i:04d}_nsd-{i:05d}" for i in range(1, 7)]
METHODS = {"r": "5-fold CV: out-of-fold predictions at each voxel's chosen alpha",
           "test_r": "test split, refit on all training data"}


def write_subject_folder(root, rng) -> None:
    """The files of a pipeline subject (validate, fit, evaluate, caption, synthesize), vertices scattered over
    all of the finer mesh (most beyond fsaverage5's 10,242)."""
    images = root / "validate" / "data" / "subj01" / "training_split" / "training_images"
    images.mkdir(parents=True)
    for i, sid in enumerate(IDS):
        Image.new("RGB", (32, 32), (40 * i, 200 - 30 * i, 90)).save(images / f"{sid}.png")
    rows = []
    for hemi in ("lh", "rh"):
        vertex = np.sort(rng.choice(40962, 300, replace=False))
        rows.append(pd.DataFrame({
            "hemisphere": hemi, "vertex": vertex, "roi:floc-faces": np.where(vertex % 4 == 0, "FFA-1", ""),
            "r": rng.uniform(0.3, 0.9, 300), "test_r": rng.uniform(0, 0.5, 300),
            "alpha": 10.0 ** rng.integers(0, 5, 300), "noise_ceiling": 0.9}))
    (root / "evaluate").mkdir()
    pd.concat(rows).to_csv(root / "evaluate" / "scores.csv", index=False)
    (root / "fit").mkdir()
    (root / "fit" / "summary.json").write_text(json.dumps({
        "subject": "subj01", "methods": METHODS,
        "diagnostics": {"alpha_at_grid_edge": 0.125, "constant_voxels": 3, "integer_betas": False}}))
    Image.new("RGB", (300, 100), (10, 120, 200)).save(root / "fit" / "routing_maps.png")
    (root / "caption").mkdir()
    pd.DataFrame({"family": ["floc-faces"], "roi": ["FFA-1"], "voxels": [150],
                  "caption": ["a <b>smiling</b> face"], "top_images": [";".join(IDS[:4])]}
                 ).to_csv(root / "caption" / "captions.csv", index=False)
    dive = root / "synthesize" / "FFA-1"
    dive.mkdir(parents=True)
    for seed in range(2):
        Image.new("RGB", (64, 64), (200, 50 * seed, 50)).save(dive / f"seed-{seed:08d}.png")


@pytest.fixture(scope="module")
def report(tmp_path_factory, fine_sphere_dir):
    base = tmp_path_factory.mktemp("report")
    write_subject_folder(base / "subj01", np.random.default_rng(1))
    env = {**os.environ, "BRAINCODE_PROGRESS": "0", MESH_DIR_ENV: str(fine_sphere_dir)}
    done = subprocess.run([sys.executable, "-m", "braincode.cli", "--quiet", "report", str(base / "subj01"),
                           "--out", str(base / "out")], check=False, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return base / "out" / "report.html"


def test_report_shows_captions_images_methods_and_diagnostics(report):
    html = report.read_text()
    assert "a &lt;b&gt;smiling&lt;/b&gt; face" in html  # the caption, escaped
    assert html.count('alt="top images"') == 4 and html.count('alt="BrainDiVE"') == 2
    assert 'alt="routing maps"' in html
    for method in METHODS.values():
        assert method.replace("'", "&#39;") in html
    assert "share of voxels whose alpha is at an edge of the grid" in html and "0.125" in html
    assert "Surface maps show all 600 values" in html  # the finer sphere put every vertex on fsaverage5
    assert report.stat().st_size < 1_500_000, f"page of {report.stat().st_size} bytes"


def test_report_without_the_full_mesh_says_which_share_it_shows(tmp_path):
    from braincode.report.subject import subject_report_html

    scores = pd.DataFrame({"hemisphere": ["lh"] * 4, "vertex": [3, 10, 20000, 150000], "r": [-0.1, 0.2, 0.3, 0.4]})
    html = subject_report_html(scores, title="t", subject="s")
    assert "Surface maps show 2 of 4 values (50.0%)" in html
    assert "1 of 4 vertices (25%) have r &lt; 0" in html
    assert "not recorded" in html and "Fit diagnostics: not recorded" in html


def test_scattered_vertices_paint_in_chromium_with_a_colour_bar(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian package chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1200,1500", f"--screenshot={shot}", report.as_uri()]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    if os.environ.get("BRAINCODE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["BRAINCODE_KEEP_SCREENSHOT"])
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    hot = (rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > 150)
    longest = max(_longest_run(row) for row in hot)
    assert longest > 300, "no colour bar: no long run of the colour map's colours in any row"
    bar_rows = (np.array([_longest_run(row) for row in hot]) > 300).sum()
    assert hot.sum() - bar_rows * longest > 2000, "the scattered vertices did not paint"


def _longest_run(row: np.ndarray) -> int:
    padded = np.concatenate([[0], row.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0
