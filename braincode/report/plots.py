"""Figures of the reports: per-ROI score distributions and cortical surface maps on fsaverage5 (nilearn)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from braincode.data.rois import roi_families, roi_labels, roi_names
from braincode.report.fsaverage import (
    FSAVERAGE5_VERTICES,
    MESH_DIR_ENV,
    SIDES,
    DrawnValues,
    full_mesh_nearest,
    onto_drawn_mesh,
)


def roi_distribution_figure(scores: pd.DataFrame, family: str, column: str = "r",
                            ceiling: str | None = None) -> Figure:
    """Box plots of ``column`` per ROI of ``family``, with each ROI's mean ``ceiling`` as a marker.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"roi:floc-faces": ["FFA-1", "FFA-1", ""], "r": [0.2, 0.4, 0.0]})
    >>> roi_distribution_figure(df, "floc-faces").axes[0].get_ylabel()
    'r'
    """
    labels = roi_labels(scores, family)
    rois = roi_names(scores, family)
    fig = Figure(figsize=(max(3.0, 0.9 * len(rois) + 1.5), 3.0))
    ax = fig.subplots()
    ax.boxplot([scores.loc[labels == roi, column].to_numpy() for roi in rois], showfliers=False)
    if ceiling is not None and ceiling in scores:
        means = [scores.loc[labels == roi, ceiling].mean() for roi in rois]
        ax.plot(np.arange(1, len(rois) + 1), means, "v", color="tab:red", label=f"mean {ceiling}")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(np.arange(1, len(rois) + 1), rois, rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_ylabel(column)
    ax.set_title(family, fontsize=9)
    return fig


def drawn_values(scores: pd.DataFrame, hemi: str, column: str) -> DrawnValues:
    """``column`` of the rows of ``hemi`` on fsaverage5: averaged onto each vertex's nearest fsaverage5 vertex when
    the full fsaverage sphere is at hand (:func:`~braincode.report.fsaverage.full_mesh_nearest`), else the values
    at fsaverage5's own vertices only."""
    rows = scores[scores["hemisphere"] == hemi]
    return onto_drawn_mesh(rows["vertex"].to_numpy(), rows[column].to_numpy(dtype=float), full_mesh_nearest(hemi))


def coverage_note(scores: pd.DataFrame, column: str = "r") -> str:
    """One sentence saying which share of the values the surface maps show, and how they were placed."""
    drawn = [drawn_values(scores, hemi, column) for hemi in SIDES]
    shown, total = sum(d.shown for d in drawn), sum(d.total for d in drawn)
    if shown == total:
        how = "values between fsaverage5's vertices are averaged onto the nearest one" \
            if any(full_mesh_nearest(h) is not None for h in SIDES) else "all vertices are fsaverage5 vertices"
        return f"Surface maps show all {total} values ({how})."
    return (f"Surface maps show {shown} of {total} values ({shown / max(total, 1):.1%}): only fsaverage vertices below "
            f"{FSAVERAGE5_VERTICES} can be placed on fsaverage5 without the full fsaverage sphere "
            f"(nilearn.datasets.load_fsaverage('fsaverage') once, or ${MESH_DIR_ENV}).")


def _face_values(values: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mean of each face's finite vertex values (NaN where none is), so a lone valued vertex colours its faces."""
    corner = values[faces]
    count = np.isfinite(corner).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(corner, axis=1) / count, np.nan)


def _nanmean_corners(corner: np.ndarray) -> float:
    finite = corner[np.isfinite(corner)]
    return float(finite.mean()) if len(finite) else np.nan


def _outline_segments(faces: np.ndarray, xy: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Segments between the centroids of the two faces on either side of each mesh edge that leaves ``inside``:
    a closed outline around the vertices of ``inside``, drawn between vertices rather than through them."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    face_of = np.repeat(np.arange(len(faces)), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, face_of = edges[order], face_of[order]
    pair = np.flatnonzero((edges[1:] == edges[:-1]).all(axis=1))  # an edge shared by faces pair and pair + 1
    crossing = pair[inside[edges[pair, 0]] != inside[edges[pair, 1]]]
    centroid = xy[faces].mean(axis=1)
    return np.stack([centroid[face_of[crossing]], centroid[face_of[crossing + 1]]], axis=1)


def roi_masks(scores: pd.DataFrame, hemi: str) -> dict[tuple[str, str], np.ndarray]:
    """``(family, roi) -> fsaverage5 vertex mask`` for every ROI of the rows of ``hemi``: a drawn vertex is in an
    ROI when most of the scored vertices placed on it are."""
    rows = scores[scores["hemisphere"] == hemi]
    nearest = full_mesh_nearest(hemi)
    masks = {}
    for family in roi_families(rows):
        labels = roi_labels(rows, family)
        for roi in roi_names(rows, family):
            share = onto_drawn_mesh(rows["vertex"].to_numpy(), (labels == roi).astype(float), nearest)
            masks[family, roi] = np.nan_to_num(share.values) >= 0.5
    return masks


def _flat_panel(ax, mesh, sulc: np.ndarray, values: np.ndarray, cmap, norm, outlines: dict) -> None:
    from matplotlib.collections import LineCollection, PolyCollection

    xy = np.asarray(mesh.coordinates)[:, :2]
    faces = np.asarray(mesh.faces)
    face = _face_values(values, faces)
    colours = cmap(norm(np.nan_to_num(face)))
    grey = 0.62 + 0.2 * (_face_values(sulc, faces) < 0)  # sulci darker, as nilearn draws them
    colours[~np.isfinite(face)] = np.stack([grey, grey, grey, np.ones_like(grey)], axis=1)[~np.isfinite(face)]
    ax.add_collection(PolyCollection(xy[faces], facecolors=colours, edgecolors="none", antialiased=False))
    for inside, colour in outlines.values():
        segments = _outline_segments(faces, xy, inside)
        ax.add_collection(LineCollection(segments, colors=[colour], linewidths=0.8))
    ax.set_xlim(xy[faces].min((0, 1))[0], xy[faces].max((0, 1))[0])
    ax.set_ylim(xy[faces].min((0, 1))[1], xy[faces].max((0, 1))[1])
    ax.set_aspect("equal")
    ax.set_axis_off()


def surface_figure(scores: pd.DataFrame, column: str, *, label: str, cmap: str = "hot", vmin: float | None = None,
                   vmax: float | None = None, outlines: bool = True) -> Figure:
    """``column`` on fsaverage5: flat maps with ROI outlines, then lateral, medial and posterior inflated views
    of both hemispheres, and one colour bar labelled ``label`` (say what the values are and their unit).

    ``scores`` needs ``hemisphere`` (``lh``/``rh``), ``vertex`` (fsaverage index) and ``column``; its ROI
    families (``roi:`` columns) are outlined on the flat maps (one colour per family). Values are placed with
    :func:`drawn_values`; each face takes the mean of its valued corners, so isolated vertices paint too. The
    range defaults to the values' (0 at the low end for ``hot``). Uses nilearn's offline fsaverage5 meshes.
    """
    import matplotlib as mpl
    from matplotlib.lines import Line2D
    from nilearn import datasets, plotting

    meshes = datasets.load_fsaverage("fsaverage5")
    values = {hemi: drawn_values(scores, hemi, column).values for hemi in SIDES}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    low = vmin if vmin is not None else (0.0 if cmap == "hot" or not len(finite) else float(finite.min()))
    high = vmax if vmax is not None else (float(finite.max()) if len(finite) else 1.0)
    high = high if high > low else low + 1.0
    norm, colormap = mpl.colors.Normalize(low, high), mpl.colormaps[cmap]
    families = roi_families(scores) if outlines else []
    family_colour = {f: mpl.colormaps["tab10"](i % 10) for i, f in enumerate(families)}
    views = ("lateral", "medial", "posterior")
    fig = Figure(figsize=(10, 3.0 + 2.6 * len(views) + 0.8))
    grid = fig.add_gridspec(len(views) + 2, 2, height_ratios=[1.25] + [1.0] * len(views) + [0.08])
    for col, (hemi, side) in enumerate(SIDES.items()):
        sulc = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="inflated", data_type="sulcal").data
        masks = roi_masks(scores, hemi) if families else {}
        ax = fig.add_subplot(grid[0, col])
        _flat_panel(ax, meshes["flat"].parts[side], np.asarray(sulc.parts[side]), values[hemi], colormap, norm,
                    {key: (mask, family_colour[key[0]]) for key, mask in masks.items()})
        ax.set_title(f"{hemi} flat", fontsize=9)
        for row, view in enumerate(views, start=1):
            ax = fig.add_subplot(grid[row, col], projection="3d")
            with warnings.catch_warnings():  # a hemisphere without values is drawn grey, without a warning
                warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
                plotting.plot_surf_stat_map(
                    meshes["inflated"].parts[side], values[hemi], hemi=side, view=view, bg_map=sulc.parts[side],
                    axes=ax, figure=fig, engine="matplotlib", cmap=colormap, colorbar=False, vmin=low, vmax=high,
                    symmetric_cbar=False, avg_method=_nanmean_corners,
                )
            ax.set_box_aspect(None, zoom=1.55)  # nilearn's 1.3 leaves the brain small in its panel
            ax.set_title(f"{hemi} {view}", fontsize=9)
    bar = fig.colorbar(mpl.cm.ScalarMappable(norm, colormap), cax=fig.add_subplot(grid[-1, :]),
                       orientation="horizontal", extend="both")
    bar.set_label(label)
    if family_colour:
        handles = [Line2D([], [], color=c, label=f) for f, c in family_colour.items()]
        fig.legend(handles=handles, loc="upper right", fontsize=7, title="ROI outlines", title_fontsize=7)
    fig.suptitle(column)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.04, top=0.95, wspace=0.02, hspace=0.08)
    return fig


def volume_figure(img, title: str, *, cmap: str = "hot") -> Figure:
    """Axial slices of a per-voxel map (a NIfTI image or path) in its own space, thresholded at 0."""
    import nibabel as nib
    from nilearn import plotting

    img = nib.load(img) if isinstance(img, (str, Path)) else img
    img = nib.Nifti1Image(np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32)), img.affine)
    fig = Figure(figsize=(10, 3))
    plotting.plot_stat_map(img, bg_img=None, display_mode="z", cut_coords=min(6, img.shape[2]), figure=fig, cmap=cmap,
                           threshold=0.0, title=title, colorbar=True, black_bg=False, draw_cross=False)
    return fig
