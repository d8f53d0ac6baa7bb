"""One self-contained HTML report per subject: per-ROI score distributions with ceilings and surface maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from braincode.data.core import roi_families
from braincode.pipeline.steps import SCORE_COLUMNS, roi_table
from braincode.report.plots import roi_distribution_figure, surface_figure, volume_figure
from braincode.report.summary import render_summary, write_summary

#: Ceiling columns, in order of preference, drawn beside the scores when present.
CEILING_COLUMNS = ("noise_ceiling", "ceiling")


def subject_report_html(scores: pd.DataFrame, *, title: str, subject: str, volume: Path | None = None) -> str:
    """Render a subject's report from its per-voxel score table (columns of ``scores.csv``).

    Surface data (``hemisphere`` lh/rh) are drawn on fsaverage5; volume data need ``volume``, the r map as
    NIfTI (``r.nii.gz`` of the fit), drawn as axial slices.
    """
    ceiling = next((c for c in CEILING_COLUMNS if c in scores), None)
    families = roi_families(scores.drop(columns=list(SCORE_COLUMNS), errors="ignore"))
    on_surface = set(scores["hemisphere"]) <= {"lh", "rh"}
    if on_surface:
        figures = {"Cross-validated r on the cortical surface (fsaverage5)": surface_figure(scores, "r")}
    else:
        figures = {} if volume is None else {"Cross-validated r (axial slices)": volume_figure(volume, "r")}
    if "alpha" in scores and on_surface:
        log_alpha = np.log10(scores["alpha"].astype(float).clip(lower=1e-12))
        figures["Chosen ridge alpha (log10)"] = surface_figure(scores.assign(log10_alpha=log_alpha), "log10_alpha",
                                                               cmap="viridis")
    for family in families:
        figures[f"r per ROI: {family}"] = roi_distribution_figure(scores, family, "r", ceiling)
    columns = [c for c in ("r", "r2", "r_truth", ceiling) if c is not None and c in scores]
    notes = [f"Subject {subject}: {len(scores)} vertices, ROI families: {', '.join(families) or 'none'}."]
    return render_summary(title, {"Mean scores per ROI": roi_table(scores, columns)}, figures, notes)


def write_subject_report(scores_csv: str | Path, out_html: str | Path, *, subject: str, title: str,
                         volume: Path | None = None) -> Path:
    """Read ``scores_csv`` and write the subject's report to ``out_html`` (atomically)."""
    scores = pd.read_csv(scores_csv, keep_default_na=False)
    return write_summary(out_html, subject_report_html(scores, title=title, subject=subject, volume=volume))
