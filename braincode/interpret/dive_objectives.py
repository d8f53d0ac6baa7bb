"""BrainDiVE objectives: what guidance maximises, built from ROIs of the voxel table or explicit voxel sets.

An ROI objective may be restricted to voxels a functional localizer marks (``localizer_t``: BrainDiVE keeps the
ROI's voxels with localizer t > 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from braincode.data.rois import roi_mask
from braincode.errors import ConfigError, DataFormatError

#: BrainDiVE's localizer threshold: ROI voxels with t above it are kept.
LOCALIZER_T = 2.0


@dataclass(frozen=True)
class Objective:
    """What guidance maximises: mean prediction over ``target`` minus ``suppress_weight`` x mean over ``suppress``.

    Parameters
    ----------
    name : str
        Used for folder names and sidecars, e.g. ``"FFA-1"`` or ``"FFA-1-vs-PPA"``.
    target, suppress : tuple of int
        Voxel (column) indices of the encoder's output; ``suppress`` may be empty.
    suppress_weight : float
        Weight of the suppressed set.

    Examples
    --------
    >>> import torch
    >>> Objective("a-vs-b", (0, 1), (2,))(torch.tensor([[1.0, 3.0, 5.0]])).tolist()
    [-3.0]
    """

    name: str
    target: tuple[int, ...]
    suppress: tuple[int, ...] = ()
    suppress_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.target:
            raise ConfigError(f"objective {self.name!r} has no target voxels", fix="pick a non-empty ROI or voxel set")
        object.__setattr__(self, "target", tuple(int(i) for i in self.target))
        object.__setattr__(self, "suppress", tuple(int(i) for i in self.suppress))

    def __call__(self, predictions: torch.Tensor) -> torch.Tensor:
        """Objective value per image, from predictions of shape (n_images, n_voxels)."""
        value = predictions[:, list(self.target)].mean(1)
        if self.suppress:
            value = value - self.suppress_weight * predictions[:, list(self.suppress)].mean(1)
        return value

    def check(self, n_voxels: int) -> None:
        """Raise :class:`ConfigError` if an index does not exist in an encoder output of ``n_voxels`` columns."""
        top = max(self.target + self.suppress)
        if top >= n_voxels or min(self.target + self.suppress) < 0:
            raise ConfigError(
                f"objective {self.name!r} indexes voxels the encoder does not predict",
                expected=f"indices in [0, {n_voxels})",
                found=f"index {top}",
                fix="build the objective from the same voxel table as the encoder",
            )

    def to_dict(self) -> dict:
        """JSON-ready description (voxel counts rather than the full index lists when they are long)."""
        out = {"name": self.name, "n_target": len(self.target), "n_suppress": len(self.suppress),
               "suppress_weight": self.suppress_weight}
        if len(self.target) + len(self.suppress) <= 64:
            out.update(target=list(self.target), suppress=list(self.suppress))
        return out


def _localized(mask: np.ndarray, localizer_t: np.ndarray | None, threshold: float, name: str) -> np.ndarray:
    if localizer_t is None:
        return mask
    t = np.asarray(localizer_t, dtype=np.float64)
    if t.shape != mask.shape:
        raise DataFormatError("the localizer t-map does not match the voxel table", expected=f"({len(mask)},)",
                              found=str(t.shape), fix="pass one t value per voxel, in the voxel table's order")
    kept = mask & (t > threshold)
    if not kept.any():
        raise ConfigError(f"no voxel of {name!r} passes the localizer threshold", expected=f"t > {threshold:g}",
                          found=f"max t {np.nanmax(t[mask]):.2f} over {int(mask.sum())} voxels",
                          fix="lower the threshold or check the t-map")
    return kept


def roi_objective(
    voxels: pd.DataFrame,
    roi: str,
    *,
    suppress: str | None = None,
    suppress_weight: float = 1.0,
    localizer_t: np.ndarray | None = None,
    t_threshold: float = LOCALIZER_T,
) -> Objective:
    """Maximise the mean predicted activation of ROI ``roi``, optionally minus that of ROI ``suppress``.

    ROIs are selected with :func:`braincode.data.rois.select_rois`' grammar: ``"FFA-1"``, ``"FFA"`` (FFA-1 and
    FFA-2), ``"family:label"`` or a whole family. Voxels in both ROIs count only as targets. With
    ``localizer_t`` (one t value per voxel, e.g. NSD's fLoc t-maps) each ROI keeps only its voxels with
    t > ``t_threshold``, as BrainDiVE does.

    Examples
    --------
    >>> import pandas as pd
    >>> v = pd.DataFrame({"hemisphere": ["lh"] * 3, "vertex": [0, 1, 2],
    ...                   "roi:floc-faces": ["FFA-1", "FFA-2", ""], "roi:floc-places": ["", "", "PPA"]})
    >>> o = roi_objective(v, "FFA", suppress="PPA")
    >>> o.name, o.target, o.suppress
    ('FFA-vs-PPA', (0, 1), (2,))
    >>> roi_objective(v, "FFA", localizer_t=np.array([3.0, 1.0, 0.0])).target
    (0,)
    """
    target = np.flatnonzero(_localized(roi_mask(voxels, roi), localizer_t, t_threshold, roi))
    if suppress is None:
        return Objective(roi, tuple(target))
    other = np.setdiff1d(np.flatnonzero(_localized(roi_mask(voxels, suppress), localizer_t, t_threshold, suppress)),
                         target)
    if other.size == 0:
        raise ConfigError(f"ROI {suppress!r} has no voxels outside {roi!r}", fix="suppress a different ROI")
    return Objective(f"{roi}-vs-{suppress}", tuple(target), tuple(other), suppress_weight)


def voxel_objective(indices: Sequence[int] | np.ndarray, *, name: str = "voxels") -> Objective:
    """Maximise the mean predicted activation of an explicit voxel set (column indices of the encoder output).

    Examples
    --------
    >>> voxel_objective([3, 1, 3]).target
    (1, 3)
    """
    return Objective(name, tuple(np.unique(np.asarray(indices, dtype=int))))


def roi_predictions(predictions: np.ndarray, index: dict[str, dict[str, np.ndarray]]) -> list[dict[str, dict[str, float]]]:
    """Mean prediction per ROI of every family for each image: a list of ``{family: {roi: mean}}``.

    Examples
    --------
    >>> import numpy as np
    >>> roi_predictions(np.array([[1.0, 2.0, 9.0]]), {"floc-faces": {"FFA-1": np.array([0, 1])}})
    [{'floc-faces': {'FFA-1': 1.5}}]
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    return [
        {fam: {roi: float(row[idx].mean()) for roi, idx in rois.items()} for fam, rois in index.items()}
        for row in predictions
    ]


def score(objective: Objective, predictions: torch.Tensor) -> torch.Tensor:
    """The objective per image, after checking its voxel indices against the predictions."""
    objective.check(predictions.shape[1])
    return objective(predictions)
