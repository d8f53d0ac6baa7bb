"""One self-contained HTML report per subject: everything its result folder holds.

Per-ROI scores with ceilings, surface maps (or volume slices) of r and of the chosen alphas, how each score was
obtained (``summary.json``'s ``"methods"``: column -> how obtained), the fit's diagnostics (``"diagnostics"``:
name -> value), the readout's maps (PNG files of the folder) and, per ROI, captions, top images and BrainDiVE
images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from braincode.data.core import Stimuli
from braincode.data.rois import roi_families, roi_table
from braincode.errors import MissingFileError
from braincode.report.plots import coverage_note, roi_distribution_figure, surface_figure, volume_figure
from braincode.report.summary import Gallery, render_summary, write_summary

#: Ceiling columns, in order of preference, drawn beside the scores when present.
CEILING_COLUMNS = ("noise_ceiling", "ceiling")
#: Score columns shown in the ROI table, when present.
SCORE_COLUMNS = ("r", "r2", "test_r", "r_test", "r_truth")
#: Readable names of known fit diagnostics (other keys are shown as they are).
DIAGNOSTICS = {
    "alpha_at_grid_edge": "share of voxels whose alpha is at an edge of the grid",
    "alpha_at_lower_edge": "share of voxels at the smallest alpha",
    "alpha_at_upper_edge": "share of voxels at the largest alpha",
    "constant_voxels": "constant voxels (scored r = 0)",
    "integer_betas": "responses are whole numbers (unscaled betas?)",
}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def roi_galleries(captions: pd.DataFrame | None, images: Stimuli | None, synthesized: Path | None) -> list[Gallery]:
    """One gallery per ROI: its caption and top images (``captions.csv`` of the caption step, with the stimuli the
    ids refer to) and its synthesised images (``<roi>/seed-*.png`` of the synthesize step)."""
    sections: dict[str, Gallery] = {}
    position = {sid: i for i, sid in enumerate(images.ids)} if images is not None else {}
    for row in (captions if captions is not None else pd.DataFrame()).to_dict("records"):
        ids = str(row.get("top_images", "")).split(";")
        top = [images.image(position[i]) for i in ids if i in position] if images is not None else []
        title = f"{row['family']}: {row['roi']}" if row.get("family") else str(row.get("roi", ""))
        sections[str(row.get("roi", title))] = Gallery(title, caption_text(row), {"top images": top} if top else {})
    if synthesized is not None and synthesized.is_dir():
        for folder in sorted(p for p in synthesized.iterdir() if p.is_dir()):
            seeds = sorted(folder.glob("seed-*.png"))
            if seeds:
                sections.setdefault(folder.name, Gallery(folder.name)).rows["BrainDiVE"] = seeds
    return list(sections.values())


def caption_text(row: dict) -> str:
    """A caption with its evaluation, when ``captions.csv`` carries one (``spearman``, ``spearman_shuffled``,
    ``split``, ``beats_shuffled``), so a caption never appears without how well it predicts and against what.

    Examples
    --------
    >>> caption_text({"caption": "a face", "spearman": 0.687, "spearman_shuffled": 0.548, "split": "validation",
    ...               "beats_shuffled": True})
    'a face (Spearman 0.687 on validation images; shuffled captions 0.548)'
    >>> caption_text({"caption": "a wall", "spearman": 0.1, "spearman_shuffled": 0.2, "split": "validation",
    ...               "beats_shuffled": False})
    'a wall (Spearman 0.100 on validation images; shuffled captions 0.200; does NOT beat its shuffled control)'
    >>> caption_text({"caption": "a house"})
    'a house'
    """
    text = str(row.get("caption", ""))
    if pd.isna(row.get("spearman", float("nan"))):
        return text
    note = f"Spearman {float(row['spearman']):.3f} on {row.get('split', 'unlabelled')} images"
    if not pd.isna(row.get("spearman_shuffled", float("nan"))):
        note += f"; shuffled captions {float(row['spearman_shuffled']):.3f}"
    if str(row.get("beats_shuffled", "")).lower() == "false":
        note += "; does NOT beat its shuffled control"
    return f"{text} ({note})"


def method_labels(scores: pd.DataFrame, summary: dict) -> dict[str, str]:
    """How each score column of ``scores`` was obtained, from ``summary["methods"]`` (said when not recorded).

    Examples
    --------
    >>> scores = pd.DataFrame({"r": [0.1], "test_r": [0.2]})
    >>> method_labels(scores, {"methods": {"r": "5-fold CV, out-of-fold predictions"}})["r"]
    '5-fold CV, out-of-fold predictions'
    >>> method_labels(scores, {})["test_r"]
    'not recorded (summary.json has no "methods")'
    """
    methods = summary.get("methods") or {}
    missing = "not recorded" + ("" if methods else ' (summary.json has no "methods")')
    return {c: str(methods.get(c, missing)) for c in SCORE_COLUMNS if c in scores}


def diagnostics_table(summary: dict) -> pd.DataFrame | None:
    """``summary["diagnostics"]`` as a table (``check``, ``value``), or None when the summary has none."""
    found = summary.get("diagnostics") or {}
    if not found:
        return None
    return pd.DataFrame({"check": [DIAGNOSTICS.get(k, k) for k in found], "value": [_plain(v) for v in found.values()]})


def _plain(value: object) -> object:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


@dataclass
class ReportInputs:
    """What a report shows beside the scores: the fit's ``summary.json`` contents, the volume r map, per-ROI
    galleries and whole images (a readout's maps) by title."""

    summary: dict = field(default_factory=dict)
    volume: Path | None = None
    galleries: list[Gallery] = field(default_factory=list)
    pictures: dict[str, Path] = field(default_factory=dict)


def subject_report_html(scores: pd.DataFrame, *, title: str, subject: str, inputs: ReportInputs | None = None) -> str:
    """Render a subject's report from its per-voxel score table (columns of ``scores.csv``).

    Surface data (``hemisphere`` lh/rh) are drawn on fsaverage5; volume data need ``inputs.volume``, the r map as
    NIfTI (``r.nii.gz`` of the fit), drawn as axial slices.
    """
    inputs = inputs or ReportInputs()
    methods = method_labels(scores, inputs.summary)
    ceiling = next((c for c in CEILING_COLUMNS if c in scores), None)
    families = roi_families(scores)
    on_surface = set(scores["hemisphere"]) <= {"lh", "rh"}
    r_method = methods.get("r", "")
    figures = {}
    if on_surface:
        figures[f"r on the cortical surface (fsaverage5); r: {r_method}"] = surface_figure(
            scores, "r", label="r (Pearson correlation of predicted and measured responses, unitless)")
    elif inputs.volume is not None:
        figures[f"r (axial slices); r: {r_method}"] = volume_figure(inputs.volume, "r (Pearson correlation, unitless)")
    if "alpha" in scores and on_surface:
        log_alpha = np.log10(scores["alpha"].astype(float).clip(lower=1e-12))
        figures["Chosen ridge alpha per vertex"] = surface_figure(
            scores.assign(log10_alpha=log_alpha), "log10_alpha", cmap="viridis",
            label="log10 of the ridge penalty alpha chosen for each vertex")
    for family in families:
        figures[f"r per ROI: {family}"] = roi_distribution_figure(scores, family, "r", ceiling)
    columns = [c for c in (*SCORE_COLUMNS, ceiling) if c is not None and c in scores]
    tables = {"Mean scores per ROI": roi_table(scores, columns),
              "How each score was obtained": pd.DataFrame({"score": list(methods), "how": list(methods.values())})}
    diagnostics = diagnostics_table(inputs.summary)
    if diagnostics is not None:
        tables["Fit diagnostics"] = diagnostics
    notes = [f"Subject {subject}: {len(scores)} vertices, ROI families: {', '.join(families) or 'none'}."]
    if on_surface:
        notes.append(coverage_note(scores))
        negative = int((scores["r"].astype(float) < 0).sum())
        if negative:
            notes.append(f"{negative} of {len(scores)} vertices ({negative / len(scores):.0%}) have r < 0: the r map "
                         "draws them at 0 (the colour bar's lower arrow), the ROI table and box plots keep them.")
    if diagnostics is None:
        notes.append("Fit diagnostics: not recorded in summary.json.")
    return render_summary(title, tables, figures, notes, inputs.galleries, pictures=inputs.pictures)


def write_subject_report(scores_csv: str | Path, out_html: str | Path, *, subject: str, title: str,
                         volume: Path | None = None, captions: Path | None = None, images: Stimuli | None = None,
                         synthesized: Path | None = None, summary: Path | None = None,
                         pictures: dict[str, Path] | None = None) -> Path:
    """Read ``scores_csv`` (and the fit's ``summary.json``, the caption and synthesis outputs, when given) and
    write the subject's report to ``out_html`` (atomically)."""
    scores = pd.read_csv(scores_csv, keep_default_na=False)
    table = None if captions is None else pd.read_csv(captions, keep_default_na=False)
    inputs = ReportInputs(json.loads(Path(summary).read_text()) if summary is not None else {}, volume,
                          roi_galleries(table, images, synthesized), dict(pictures or {}))
    return write_summary(out_html, subject_report_html(scores, title=title, subject=subject, inputs=inputs))


def _first(folder: Path, *names: str) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


def _stimuli_in(folders: list[Path]) -> Stimuli | None:
    paths = sorted(p for d in folders if d.is_dir() for p in d.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    return Stimuli(ids=[p.stem for p in paths], paths=paths) if paths else None


def write_folder_report(results: str | Path, out_html: str | Path, *, subject: str | None = None,
                        title: str | None = None, images: Stimuli | None = None) -> Path:
    """Write the report of a result folder: the output folder of ``braincode fit`` (or ``readout``), or a subject
    folder of ``braincode run`` (``validate/ fit/ evaluate/ caption/ synthesize/``).

    Shows the scores (``evaluate/scores.csv`` or ``scores.csv``), ``summary.json``'s methods and diagnostics, the
    volume map ``r.nii.gz``, the PNG files beside the scores (a readout's maps), ``captions.csv`` with its top
    images, and BrainDiVE images (``synthesize/<roi>/seed-*.png``). Top images are the ``images`` given, else
    the image files of ``top_images/`` or ``caption/top_images/``, else a synthetic subject's own training
    images (``validate/data/<subject>/training_split/training_images/``).
    """
    results = Path(results)
    scores = _first(results, "evaluate/scores.csv", "scores.csv")
    if scores is None:
        raise MissingFileError("no scores found", path=results, expected="scores.csv or evaluate/scores.csv",
                               found=", ".join(sorted(p.name for p in results.glob("*"))) or "an empty folder",
                               fix="pass the output folder of `braincode fit` or a subject folder of `braincode run`")
    subject = subject or results.name
    captions = _first(results, "caption/captions.csv", "captions.csv")
    if images is None and captions is not None:
        images = _stimuli_in([results / "top_images", results / "caption" / "top_images",
                              *(results / "validate" / "data").glob("*/training_split/training_images")])
    pictures = {p.stem.replace("_", " "): p for folder in (results, results / "fit") if folder.is_dir()
                for p in sorted(folder.glob("*.png"))}
    return write_subject_report(
        scores, out_html, subject=subject, title=title or f"braincode report: {subject}",
        volume=_first(results, "fit/r.nii.gz", "r.nii.gz"), captions=captions, images=images,
        synthesized=_first(results, "synthesize", "synthesized"),
        summary=_first(results, "fit/summary.json", "summary.json"), pictures=pictures)
