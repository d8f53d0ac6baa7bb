"""One self-contained HTML report per subject: per-ROI score distributions with ceilings and surface maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from braincode.data.core import Stimuli
from braincode.data.rois import roi_families, roi_table
from braincode.report.plots import roi_distribution_figure, surface_figure, volume_figure
from braincode.report.summary import Gallery, render_summary, write_summary

#: Ceiling columns, in order of preference, drawn beside the scores when present.
CEILING_COLUMNS = ("noise_ceiling", "ceiling")


def roi_galleries(captions: pd.DataFrame | None, images: Stimuli | None, synthesized: Path | None) -> list[Gallery]:
    """One gallery per ROI: its caption and top images (``captions.csv`` of the caption step, with the stimuli the
    ids refer to) and its synthesised images (``synthesized/<roi>/seed-*.png`` of the synthesize step)."""
    sections: dict[str, Gallery] = {}
    if captions is not None and images is not None:
        position = {sid: i for i, sid in enumerate(images.ids)}
        for row in captions.itertuples(index=False):
            top = [images.image(position[i]) for i in str(row.top_images).split(";") if i in position]
            sections[row.roi] = Gallery(f"{row.family}: {row.roi}", row.caption, {"top images": top})
    if synthesized is not None:
        for folder in sorted(p for p in synthesized.iterdir() if p.is_dir()):
            roi = folder.name
            gallery = sections.setdefault(roi, Gallery(roi))
            gallery.rows["BrainDiVE"] = sorted(folder.glob("seed-*.png"))
    return list(sections.values())


def subject_report_html(scores: pd.DataFrame, *, title: str, subject: str, volume: Path | None = None,
                        galleries: list[Gallery] = ()) -> str:
    """Render a subject's report from its per-voxel score table (columns of ``scores.csv``).

    Surface data (``hemisphere`` lh/rh) are drawn on fsaverage5; volume data need ``volume``, the r map as
    NIfTI (``r.nii.gz`` of the fit), drawn as axial slices. ``galleries`` add per-ROI captions and images.
    """
    ceiling = next((c for c in CEILING_COLUMNS if c in scores), None)
    families = roi_families(scores)
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
    return render_summary(title, {"Mean scores per ROI": roi_table(scores, columns)}, figures, notes, galleries)


def write_subject_report(scores_csv: str | Path, out_html: str | Path, *, subject: str, title: str,
                         volume: Path | None = None, captions: Path | None = None, images: Stimuli | None = None,
                         synthesized: Path | None = None) -> Path:
    """Read ``scores_csv`` (and the caption and synthesis outputs, when given) and write the subject's report to
    ``out_html`` (atomically)."""
    scores = pd.read_csv(scores_csv, keep_default_na=False)
    table = None if captions is None else pd.read_csv(captions, keep_default_na=False)
    galleries = roi_galleries(table, images, synthesized)
    return write_summary(out_html, subject_report_html(scores, title=title, subject=subject, volume=volume,
                                                       galleries=galleries))
