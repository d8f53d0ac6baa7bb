"""Per-vertex values of fsaverage onto the drawn fsaverage5 mesh, so that every value reaches the map.

fsaverage (163,842 vertices per hemisphere) and fsaverage5 (10,242) are icosahedral subdivisions of one sphere:
fsaverage's first 10,242 vertices *are* fsaverage5's, and every further vertex lies between them. A value at a
vertex beyond 10,242 is averaged onto its nearest fsaverage5 vertex on the sphere when the full fsaverage sphere is
at hand locally (nilearn's data folder, or ``$BRAINCODE_FSAVERAGE_DIR``, holding ``sphere_{left,right}.gii[.gz]``
as nilearn's ``fetch_surf_fsaverage("fsaverage")`` writes them; nothing is downloaded). Without it only the values
at the first 10,242 vertices can be placed, and :class:`DrawnValues` says which share that is.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from braincode.atlases import N_VERTICES

logger = logging.getLogger(__name__)

#: Vertices per hemisphere of fsaverage5; fsaverage's first 10242 vertices are fsaverage5's.
FSAVERAGE5_VERTICES = N_VERTICES["fsaverage5"]
#: Vertices per hemisphere of fsaverage.
FSAVERAGE_VERTICES = N_VERTICES["fsaverage"]
#: Hemisphere codes of the voxel table -> nilearn's names.
SIDES = {"lh": "left", "rh": "right"}
#: Environment variable naming a folder with the full fsaverage spheres (``sphere_left.gii.gz`` ...).
MESH_DIR_ENV = "BRAINCODE_FSAVERAGE_DIR"


@dataclass(frozen=True)
class DrawnValues:
    """Values placed on the drawn mesh.

    Attributes
    ----------
    values : ndarray
        One value per drawn vertex: the mean of the input values assigned to it, NaN where none is.
    shown : int
        How many input values reached the drawn mesh.
    total : int
        How many input values there were.
    """

    values: np.ndarray
    shown: int
    total: int

    @property
    def share(self) -> float:
        """Share of the input values that reached the drawn mesh (1.0 for no input)."""
        return self.shown / self.total if self.total else 1.0


def nearest_drawn(sphere: np.ndarray, n_drawn: int = FSAVERAGE5_VERTICES) -> np.ndarray:
    """For every vertex of a subdivided sphere, the index of its nearest vertex among the first ``n_drawn``.

    The first ``n_drawn`` vertices map to themselves. Distances are measured between directions from the
    sphere's centre, so the sphere's radius does not matter.

    Examples
    --------
    >>> sphere = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.9, 0.1, 0], [0.2, 0.8, 0]])
    >>> nearest_drawn(sphere, n_drawn=2).tolist()
    [0, 1, 0, 1]
    """
    from scipy.spatial import cKDTree

    unit = np.asarray(sphere, dtype=np.float64)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    _, nearest = cKDTree(unit[:n_drawn]).query(unit)
    nearest = np.asarray(nearest, dtype=np.int64)
    nearest[:n_drawn] = np.arange(n_drawn)
    return nearest


def onto_drawn_mesh(vertex: np.ndarray, values: np.ndarray, nearest: np.ndarray | None = None,
                    n_drawn: int = FSAVERAGE5_VERTICES) -> DrawnValues:
    """Average per-vertex ``values`` of a fine mesh onto the first ``n_drawn`` vertices.

    Parameters
    ----------
    vertex : array of int
        Fine-mesh vertex index of each value (fsaverage indices).
    values : array of float
        One value per entry of ``vertex``; NaN values are ignored.
    nearest : array of int, optional
        The drawn vertex of every fine-mesh vertex (:func:`nearest_drawn`). Without it, only values at vertices
        below ``n_drawn`` are placed (the fine mesh's first vertices are the drawn mesh's).
    n_drawn : int
        Vertices of the drawn mesh.

    Examples
    --------
    >>> out = onto_drawn_mesh(np.array([0, 1, 3]), np.array([1.0, 2.0, 4.0]), nearest=np.array([0, 1, 0, 0]),
    ...                       n_drawn=2)
    >>> out.values.tolist(), out.share
    ([2.5, 2.0], 1.0)
    >>> out = onto_drawn_mesh(np.array([0, 1, 3]), np.array([1.0, 2.0, 4.0]), n_drawn=2)
    >>> out.values.tolist(), out.shown, out.total
    ([1.0, 2.0], 2, 3)
    """
    vertex = np.asarray(vertex, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if nearest is None:
        keep = finite & (vertex < n_drawn)
        target = vertex[keep]
    else:
        keep = finite & (vertex < len(nearest))
        target = np.asarray(nearest)[vertex[keep]]
    sums = np.bincount(target, weights=values[keep], minlength=n_drawn)
    counts = np.bincount(target, minlength=n_drawn)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return DrawnValues(out, int(keep.sum()), int(finite.sum()))


def _mesh_dirs() -> list[Path]:
    from nilearn.datasets import get_data_dirs

    dirs = [Path(os.environ[MESH_DIR_ENV])] if os.environ.get(MESH_DIR_ENV) else []
    return dirs + [Path(d) / "fsaverage" for d in get_data_dirs()]


@lru_cache(maxsize=8)
def _nearest_from(path: Path, side: str) -> np.ndarray | None:
    from nilearn import datasets, surface

    sphere = np.asarray(surface.load_surf_mesh(str(path)).coordinates, dtype=np.float64)
    coarse = np.asarray(datasets.load_fsaverage("fsaverage5")["sphere"].parts[side].coordinates, dtype=np.float64)
    if len(sphere) <= FSAVERAGE5_VERTICES:
        logger.warning("%s has %d vertices, fewer than fsaverage5: not used", path, len(sphere))
        return None
    first = sphere[:FSAVERAGE5_VERTICES] / np.linalg.norm(sphere[:FSAVERAGE5_VERTICES], axis=1, keepdims=True)
    unit = coarse / np.linalg.norm(coarse, axis=1, keepdims=True)
    if np.median(np.linalg.norm(first - unit, axis=1)) > 0.01:
        logger.warning("%s does not start with fsaverage5's vertices: not used", path)
        return None
    return nearest_drawn(sphere)


def full_mesh_nearest(hemi: str) -> np.ndarray | None:
    """The nearest fsaverage5 vertex of every vertex of the full fsaverage sphere of ``hemi`` (``lh``/``rh``),
    or None when no full sphere is available locally (nothing is downloaded).

    Looks in ``$BRAINCODE_FSAVERAGE_DIR`` first, then in nilearn's data folders (``fsaverage/``).
    """
    side = SIDES[hemi]
    for folder in _mesh_dirs():
        for name in (f"sphere_{side}.gii.gz", f"sphere_{side}.gii"):
            if (folder / name).is_file():
                nearest = _nearest_from(folder / name, side)
                if nearest is not None:
                    return nearest
    return None
