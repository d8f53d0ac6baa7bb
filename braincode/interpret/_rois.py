"""The one ROI selection of braincode.interpret (captions and synthesis), until ``braincode.data.rois`` lands.

Grammar: ``family`` (each of its ROIs), ``family:label``, ``label`` (in any family), or a label prefix (``FFA`` for
FFA-1 and FFA-2). Voxels labelled ``""`` are in no ROI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from braincode.data.core import roi_families
from braincode.errors import ConfigError


class Unit(NamedTuple):
    """One selected ROI: its family, its name and the boolean voxel mask."""

    family: str
    roi: str
    mask: np.ndarray


def _labels(voxels: pd.DataFrame, family: str) -> np.ndarray:
    return voxels[family].fillna("").astype(str).to_numpy()


def roi_mask(voxels: pd.DataFrame, name: str) -> np.ndarray:
    """Boolean voxel mask of ROI ``name`` (``family:label``, a label, or a label prefix).

    Examples
    --------
    >>> v = pd.DataFrame({"floc-faces": ["FFA-1", "FFA-2", "", "OFA"]})
    >>> roi_mask(v, "FFA").tolist(), roi_mask(v, "floc-faces:OFA").tolist()
    ([True, True, False, False], [False, False, False, True])
    """
    families = roi_families(voxels)
    family, _, label = name.rpartition(":")
    searched = [family] if family in families else families
    for match in (lambda lab: lab == label, lambda lab: np.char.startswith(lab.astype(str), f"{label}-")):
        mask = np.zeros(len(voxels), dtype=bool)
        for fam in searched:
            mask |= np.asarray(match(_labels(voxels, fam)), dtype=bool)
        if mask.any():
            return mask
    known = sorted({lab for fam in families for lab in _labels(voxels, fam) if lab})
    raise ConfigError(f"no ROI named {name!r} in the voxel table",
                      expected=f"one of {known}, a prefix of one (FFA for FFA-1 and FFA-2), family:label, "
                               f"or a family of {families}",
                      found=name, fix="pick an ROI label from the fit's scores.csv")


def select(voxels: pd.DataFrame, names: Sequence[str]) -> list[Unit]:
    """The ROIs ``names`` as units; a family name stands for each of its ROIs.

    Examples
    --------
    >>> v = pd.DataFrame({"floc-faces": ["FFA-1", "OFA", ""], "floc-places": ["", "", "PPA"]})
    >>> [(u.roi, u.mask.tolist()) for u in select(v, ["floc-faces", "PPA"])]
    [('FFA-1', [True, False, False]), ('OFA', [False, True, False]), ('PPA', [False, False, True])]
    """
    families = roi_families(voxels)
    units = []
    for name in names:
        if name in families:
            labels = _labels(voxels, name)
            units += [Unit(name, roi, labels == roi) for roi in dict.fromkeys(labels) if roi]
            continue
        family = name.rpartition(":")[0]
        owner = family if family in families else next(
            (f for f in families if (_labels(voxels, f) == name).any()), "")
        units.append(Unit(owner, name, roi_mask(voxels, name)))
    return units


def roi_index(voxels: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Voxel indices of every ROI, as ``{family: {roi: indices}}``.

    Examples
    --------
    >>> v = pd.DataFrame({"hemisphere": ["lh"] * 3, "vertex": [0, 1, 2], "floc-faces": ["FFA-1", "", "FFA-1"]})
    >>> {k: i.tolist() for k, i in roi_index(v)["floc-faces"].items()}
    {'FFA-1': [0, 2]}
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for family in roi_families(voxels):
        labels = _labels(voxels, family)
        out[family] = {roi: np.flatnonzero(labels == roi) for roi in sorted(set(labels) - {""})}
    return out


def roi_means(values: np.ndarray, index: dict[str, dict[str, np.ndarray]]) -> list[dict[str, dict[str, float]]]:
    """Mean of each row of ``values`` (n, n_voxels) per ROI of every family: a list of ``{family: {roi: mean}}``.

    Examples
    --------
    >>> roi_means(np.array([[1.0, 2.0, 9.0]]), {"floc-faces": {"FFA-1": np.array([0, 1])}})
    [{'floc-faces': {'FFA-1': 1.5}}]
    """
    values = np.asarray(values, dtype=np.float64)
    return [{fam: {roi: float(row[idx].mean()) for roi, idx in rois.items()} for fam, rois in index.items()}
            for row in values]
