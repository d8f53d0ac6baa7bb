"""Figures of the reports: per-ROI score distributions and cortical surface maps on fsaverage5 (nilearn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from braincode.data.rois import roi_labels, roi_names

#: Vertices per hemisphere of fsaverage5; fsaverage's first 10242 vertices are fsaverage5's.
FSAVERAGE5_VERTICES = 10242
_HEMIS = {"lh": "left", "rh": "right"}


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


def fsaverage5_values(vertex: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Place per-vertex values of fsaverage vertices onto fsaverage5 (NaN elsewhere).

    fsaverage5 is the first 10242 vertices of fsaverage, so vertices beyond them are not drawn.
    """
    out = np.full(FSAVERAGE5_VERTICES, np.nan)
    vertex = np.asarray(vertex)
    keep = vertex < FSAVERAGE5_VERTICES
    out[vertex[keep]] = np.asarray(values, dtype=float)[keep]
    return out


def surface_figure(scores: pd.DataFrame, column: str, *, cmap: str = "hot", symmetric: bool = False,
                   threshold: float | None = None) -> Figure:
    """Lateral, medial and posterior views of ``column`` on the inflated fsaverage5 surfaces of both hemispheres.

    ``scores`` needs ``hemisphere`` (``lh``/``rh``), ``vertex`` (fsaverage index) and ``column``. Uses nilearn's
    offline fsaverage5 meshes and sulcal maps.
    """
    from nilearn import datasets, plotting

    mesh = datasets.load_fsaverage("fsaverage5")["inflated"]
    sulc = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="inflated", data_type="sulcal").data
    finite = scores[column].replace([np.inf, -np.inf], np.nan).dropna()
    vmax = float(np.nanmax(np.abs(finite))) if len(finite) else 1.0
    views = ("lateral", "medial", "posterior")
    fig = Figure(figsize=(10, 2.6 * len(views)))
    for row, view in enumerate(views):
        for col, (hemi, side) in enumerate(_HEMIS.items()):
            ax = fig.add_subplot(len(views), 2, 2 * row + col + 1, projection="3d")
            rows = scores[scores["hemisphere"] == hemi]
            plotting.plot_surf_stat_map(
                mesh.parts[side], fsaverage5_values(rows["vertex"].to_numpy(), rows[column].to_numpy()),
                hemi=side, view=view, bg_map=sulc.parts[side], axes=ax, figure=fig, engine="matplotlib",
                cmap=cmap, colorbar=False, vmax=vmax or 1.0, symmetric_cbar=symmetric, threshold=threshold,
            )
            ax.set_title(f"{hemi} {view}", fontsize=9)
    fig.suptitle(column)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.9, wspace=-0.15, hspace=0.05)
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
