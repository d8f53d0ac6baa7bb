"""``braincode demo``: synthetic data with a known truth, end to end, in a few minutes on a laptop.

Synthetic images and responses (Algonauts layout) -> features of a tiny random-weight ViT (patch tokens) and of
the MiniLM sentence model (captions) -> per-voxel ridge -> scores against the noiseless ground truth, printed per
ROI and written to a one-page HTML summary.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from braincode.data import load_algonauts
from braincode.data.rois import roi_table
from braincode.data.synthetic import load_truth, make_synthetic
from braincode.encoding.analysis import cross_validate_voxels, make_encoder
from braincode.encoding.analysis_outputs import write_result
from braincode.encoding.metrics import pearson_r
from braincode.features import FeatureStore
from braincode.features.design import FeatureSpec, extract_spaces, stack_spaces
from braincode.report.summary import render_summary, write_summary

log = logging.getLogger(__name__)

VISION = FeatureSpec("open_clip:tiny-vit@random", ("blocks.1", "pooled"), pool="grid", out_grid=4)
TEXT = FeatureSpec("minilm")
SUBJECT = "subj01"


def _bar_figure(table: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    x = np.arange(len(table))
    bars = (("r_test", "prediction vs noisy test responses"), ("ceiling", "ceiling: noisy vs noiseless"),
            ("r_truth", "prediction vs noiseless truth"))
    for i, (column, label) in enumerate(bars):
        ax.bar(x + (i - 1) * 0.27, table[column], width=0.27, label=label)
    ax.set_xticks(x, table["roi"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("Pearson r (test split)")
    ax.legend(fontsize=7, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return fig


def run_demo(out: Path, *, n_train: int = 600, n_test: int = 100, seed: int = 0, device: str = "auto") -> pd.DataFrame:
    """Run the demo into ``out`` and return the per-ROI table that it prints.

    Writes ``out/data`` (the synthetic dataset), ``out/cache`` (features), ``out/fit`` (scores.csv,
    summary.json, predictions) and ``out/index.html``.
    """
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data_root = make_synthetic(out / "data", SUBJECT, n_train=n_train, n_test=n_test, seed=seed)
    ds = load_algonauts(data_root, SUBJECT)
    truth = load_truth(data_root, SUBJECT)
    stimuli = {split: ds[split].stimuli for split in ("train", "test")}
    store = FeatureStore(out / "cache")
    vision = extract_spaces(stimuli, VISION, store=store, device=device)
    text = extract_spaces(stimuli, TEXT, store=store, device=device, text=True)
    designs = {split: stack_spaces({**vision[split], "text": text[split]["pooled"]})[0] for split in stimuli}
    result = cross_validate_voxels(make_encoder(device=device), designs["train"], ds["train"].responses.data,
                                   ds.voxels, X_test=designs["test"], random_state=seed)
    seconds = time.perf_counter() - start
    info = {"model": VISION.model_id, "layers": list(VISION.layers), "text_model": TEXT.model_id,
            "n_features": int(designs["train"].shape[1]), "seconds": round(seconds, 1)}
    write_result(result, ds, out / "fit", info)

    scores = result.scores.assign(
        r_truth=pearson_r(truth.test_clean, result.test_predictions),
        r_test=pearson_r(truth.test_fmri, result.test_predictions),
        ceiling=pearson_r(truth.test_fmri, truth.test_clean),
    )
    table = roi_table(scores, ["r", "r_truth", "r_test", "ceiling"])
    notes = [
        f"{n_train} training and {n_test} test images, {len(ds.voxels)} vertices, seed {seed}, {seconds:.0f} s.",
        (
            f"Features: {VISION.model_id} {', '.join(VISION.layers)} (tokens pooled to a {VISION.out_grid}x"
            f"{VISION.out_grid} grid) + {TEXT.model_id} on the captions; {designs['train'].shape[1]} features."
        ),
        (
            "r: cross-validated on the training split; r_truth: test predictions against the noiseless truth; "
            "r_test: against the noisy test responses; ceiling: noisy test responses against the truth."
        ),
        (
            "The ViT has random weights (offline demo): its features carry little of the images, and most of the "
            "signal here comes from the caption features. Use pretrained weights for real analyses."
        ),
    ]
    html = render_summary("braincode demo: synthetic subject", {"Scores per ROI": table},
                          {"Mean test r per ROI, with the ceiling": _bar_figure(table)}, notes)
    write_summary(out / "index.html", html)
    with pd.option_context("display.width", 120, "display.max_rows", 200, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    print(f"demo finished in {seconds:.0f} s; summary page: {out / 'index.html'}")
    return table
