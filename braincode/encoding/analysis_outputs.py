"""Writers of a :class:`~braincode.encoding.analysis.VoxelCVResult`: scores table, summary with methods, maps.

``write_result`` writes ``scores.csv`` (one row per voxel), ``summary.json`` (the run's description, how each
score was obtained, fit diagnostics, mean r per ROI with bootstrap CIs), the cross-validated r as a map in the
data's own space and the test-split predictions. ROI means (:func:`braincode.data.rois.roi_table`) skip voxels
without a score (NaN).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from braincode.atomic import atomic_write
from braincode.data.core import Dataset
from braincode.data.predictions import write_algonauts_predictions
from braincode.data.rois import roi_families, roi_table
from braincode.encoding.analysis import VoxelCVResult
from braincode.encoding.metrics import algonauts_score
from braincode.encoding.stats import roi_bootstrap_ci
from braincode.io import write_map


def summarize(scores: pd.DataFrame, column: str = "r") -> dict[str, dict[str, float]]:
    """Mean of ``column`` per ROI, nested as ``{family: {roi: mean}}`` with ``{"all": {"all": mean}}`` (None for an
    ROI without any scored voxel, so that the summary stays valid JSON)."""
    out: dict[str, dict[str, float]] = {}
    for row in roi_table(scores, [column]).itertuples(index=False):
        value = float(getattr(row, column))
        out.setdefault(row.family, {})[str(row.roi)] = value if np.isfinite(value) else None
    return out


def result_summary(result: VoxelCVResult, *, random_state: int = 0) -> dict:
    """What ``summary.json`` holds beside the run's description.

    ``methods`` (how each score was obtained), ``diagnostics``, mean r per ROI with bootstrap 95% CIs (voxels
    with a score only), the number of FDR-significant voxels and the Algonauts score when the scores allow.
    """
    scores = result.scores
    out: dict = {"methods": result.methods, "diagnostics": result.diagnostics, "mean_r": summarize(scores)}
    families = roi_families(scores)
    scored = scores[np.isfinite(scores["r"].to_numpy(dtype=float))]
    if families and len(scored):
        ci = roi_bootstrap_ci(scored["r"].to_numpy(), scored, families, random_state=random_state)
        out["r_ci95"] = ci.to_dict(orient="records")
    if "significant" in scores:
        out["significant_voxels"] = int(scores["significant"].astype(bool).sum())
    if "noise_ceiling" in scores and (scores["noise_ceiling"] > 0).any():
        out["algonauts_score"] = algonauts_score(scores["r"].fillna(0).to_numpy(), scores["noise_ceiling"].to_numpy())
    return out


def write_result(result: VoxelCVResult, dataset: Dataset, out: str | Path, info: dict | None = None) -> list[str]:
    """Write a result's files into ``out`` and return their names.

    ``scores.csv``, ``summary.json`` (``info`` first, e.g. model and layers, then :func:`result_summary`), the
    cross-validated r as a map (``{lh,rh}.r.gii`` on surfaces, ``r.nii.gz`` for volumes) and, when there are test
    predictions, ``{lh,rh}_pred_test.npy`` (Algonauts format) for hemisphere data, else ``pred_test.npy``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scores = result.scores
    surface = set(scores["hemisphere"]) <= {"lh", "rh"}
    written = ["scores.csv", "summary.json"]
    if result.test_predictions is not None:
        if surface:
            write_algonauts_predictions(out, result.test_predictions, scores)
            written.append("{lh,rh}_pred_test.npy")
        else:
            atomic_write(out / "pred_test.npy", lambda p: np.save(p, result.test_predictions))
            written.append("pred_test.npy")
    r = scores["r"].to_numpy(dtype=np.float32)
    write_map(r, dataset, out / ("{hemi}.r.gii" if surface else "r.nii.gz"))
    written.append("{lh,rh}.r.gii" if surface else "r.nii.gz")
    atomic_write(out / "scores.csv", lambda p: scores.to_csv(p, index=False))
    summary = {"subject": dataset.subject, "space": dataset.space, **(info or {}), **result_summary(result)}
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2, default=_json)))
    return written


def _json(value):
    """numpy scalars in summaries."""
    return value.item() if hasattr(value, "item") else str(value)
