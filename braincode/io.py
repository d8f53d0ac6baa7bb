"""Write per-voxel results back to brain-space files: NIfTI for volumes, GIFTI or MGH for surfaces.

Every writer fills a full grid / mesh from the voxel table (``i, j, k`` for volumes, ``hemisphere`` and
``vertex`` for surfaces), leaves voxels without a value at ``fill`` (NaN by default), and writes through a
temporary file that is renamed into place, so an error never leaves a partial file behind.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braincode.atlases import N_VERTICES
from braincode.atomic import atomic_write
from braincode.data.core import Dataset
from braincode.data.surface import SURFACE_SUFFIXES
from braincode.data.volume import read_image
from braincode.errors import ConfigError, DataFormatError

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii", ".nii.gz")


def _values(values: np.ndarray, voxels: pd.DataFrame) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim not in (1, 2) or values.shape[0] != len(voxels):
        raise DataFormatError(
            "one value (or row of values) per voxel-table row is needed",
            expected=f"shape ({len(voxels)},) or ({len(voxels)}, k)",
            found=str(values.shape),
        )
    return values.astype(np.float32)


def _save(img: nib.filebasedimages.FileBasedImage, path: Path) -> Path:
    """Serialise ``img`` to bytes (gzipped for ``.gz`` / ``.mgz``) and write them atomically to ``path``."""
    payload = img.to_bytes()
    if path.name.endswith((".gz", ".mgz")):
        payload = gzip.compress(payload, mtime=0)
    return atomic_write(path, lambda tmp: tmp.write_bytes(payload))


def write_volume(
    values: np.ndarray,
    voxels: pd.DataFrame,
    path: str | Path,
    *,
    reference: np.ndarray | nib.spatialimages.SpatialImage | str | Path,
    shape: tuple[int, int, int] | None = None,
    fill: float = np.nan,
) -> Path:
    """Write per-voxel values into a NIfTI volume at the voxel table's ``i, j, k``.

    Parameters
    ----------
    values : array of shape (n_voxels,) or (n_voxels, k)
        One value per voxel (3-D output) or k values (4-D output), ordered as ``voxels``.
    voxels : DataFrame
        Voxel table with integer columns ``i, j, k``.
    path : str or Path
        Output file ending ``.nii`` or ``.nii.gz``.
    reference : 4x4 affine, image, or path to an image
        Gives the affine (and, for an image, the grid shape).
    shape : tuple of 3 ints, optional
        Grid shape; required when ``reference`` is an affine.
    fill : float
        Value of voxels not in the table.

    Examples
    --------
    >>> import tempfile, pathlib, pandas as pd, nibabel as nib, numpy as np
    >>> vox = pd.DataFrame({"hemisphere": "", "vertex": [0, 1], "i": [0, 1], "j": [0, 2], "k": [1, 0]})
    >>> out = write_volume([0.5, 2.0], vox, pathlib.Path(tempfile.mkdtemp()) / "r.nii.gz",
    ...                    reference=np.eye(4), shape=(2, 3, 2))
    >>> float(nib.load(out).get_fdata()[1, 2, 0])
    2.0
    """
    path = Path(path)
    if not path.name.endswith(VOLUME_SUFFIXES):
        raise ConfigError(
            "a volume is written as NIfTI", path=path, expected=f"a name ending {VOLUME_SUFFIXES}"
        )
    missing = [c for c in "ijk" if c not in voxels.columns]
    if missing:
        raise DataFormatError(
            "the voxel table has no grid coordinates",
            expected="columns i, j, k (volume datasets have them)",
            found=f"columns {list(voxels.columns)}",
            fix="write surface data with write_surface",
        )
    if isinstance(reference, (str, Path, nib.spatialimages.SpatialImage)):
        ref = read_image(reference, what="reference image")
        affine, shape = ref.affine, tuple(shape or ref.shape[:3])
    else:
        affine = np.asarray(reference, dtype=np.float64)
        if affine.shape != (4, 4) or shape is None:
            raise ConfigError(
                "an affine reference needs a 4x4 matrix and shape=(X, Y, Z)",
                found=f"affine {affine.shape}, shape {shape}",
            )
    values = _values(values, voxels)
    ijk = voxels[list("ijk")].to_numpy()
    if ijk.size and (ijk.min() < 0 or np.any(ijk.max(0) >= np.asarray(shape))):
        raise DataFormatError(
            "voxel coordinates fall outside the grid",
            expected=f"i, j, k within {shape}",
            found=f"max {ijk.max(0).tolist()}",
            fix="pass the reference image of this dataset",
        )
    grid = np.full((*shape, *values.shape[1:]), fill, dtype=np.float32)
    grid[tuple(ijk.T)] = values
    img = nib.Nifti1Image(grid, affine)
    img.header.set_xyzt_units("mm")
    logger.info("writing %s (%s)", path, "x".join(map(str, grid.shape)))
    return _save(img, path)


def _surface_image(values: np.ndarray, suffix: str) -> nib.filebasedimages.FileBasedImage:
    if suffix == ".gii":
        columns = values if values.ndim == 2 else values[:, None]
        arrays = [
            nib.gifti.GiftiDataArray(
                np.ascontiguousarray(c), intent="NIFTI_INTENT_NONE", datatype="NIFTI_TYPE_FLOAT32"
            )
            for c in columns.T
        ]
        return nib.gifti.GiftiImage(darrays=arrays)
    frames = values.shape[1:] if values.ndim == 2 and values.shape[1] > 1 else ()  # MGH: (V, 1, 1[, k > 1])
    return nib.MGHImage(values.reshape(values.shape[0], 1, 1, *frames), np.eye(4))


def write_surface(
    values: np.ndarray,
    voxels: pd.DataFrame,
    paths: Mapping[str, str | Path] | str,
    *,
    n_vertices: Mapping[str, int] | int,
    fill: float = np.nan,
) -> dict[str, Path]:
    """Write per-vertex values as one surface map per hemisphere (GIFTI ``.gii`` or MGH ``.mgh``/``.mgz``).

    Parameters
    ----------
    values : array of shape (n_voxels,) or (n_voxels, k)
    voxels : DataFrame
        Voxel table with ``hemisphere`` (``"lh"``/``"rh"``) and ``vertex`` (index in that hemisphere's mesh).
    paths : dict of hemisphere -> path, or a template containing ``{hemi}``
        E.g. ``"out/{hemi}.score.gii"``; the suffix chooses the format.
    n_vertices : dict of hemisphere -> int, or int
        Mesh size per hemisphere (163842 for fsaverage); ``Dataset.meta["n_vertices"]`` for loaded surfaces.
    fill : float
        Value of vertices not in the table.

    Returns
    -------
    dict of hemisphere -> Path

    Examples
    --------
    >>> import tempfile, pandas as pd, nibabel as nib, numpy as np
    >>> vox = pd.DataFrame({"hemisphere": ["lh", "rh"], "vertex": [3, 0]})
    >>> out = write_surface([1.0, 2.0], vox, tempfile.mkdtemp() + "/{hemi}.r.mgh", n_vertices=5)
    >>> nib.load(out["lh"]).get_fdata().ravel().tolist()
    [nan, nan, nan, 1.0, nan]
    """
    values = _values(values, voxels)
    hemis = pd.unique(voxels["hemisphere"]).tolist()
    if not set(hemis) <= {"lh", "rh"}:
        raise DataFormatError(
            "surface data needs hemispheres 'lh'/'rh'",
            found=f"{hemis}",
            fix="write volume data with write_volume",
        )
    targets = {h: Path(paths.format(hemi=h) if isinstance(paths, str) else paths[h]) for h in hemis}
    if isinstance(paths, str) and "{hemi}" not in paths and len(hemis) > 1:
        raise ConfigError(
            "one file per hemisphere is needed", found=repr(paths), fix="put {hemi} in the path"
        )
    sizes = {h: int(n_vertices if isinstance(n_vertices, int) else n_vertices[h]) for h in hemis}
    images = {}
    for hemi, target in targets.items():
        suffix = next((s for s in SURFACE_SUFFIXES if target.name.endswith(s)), None)
        if suffix is None:
            raise ConfigError(
                "unknown surface format", path=target, expected=f"a name ending {SURFACE_SUFFIXES}"
            )
        rows = (voxels["hemisphere"] == hemi).to_numpy()
        vertex = voxels["vertex"].to_numpy()[rows]
        if vertex.min() < 0 or vertex.max() >= sizes[hemi]:
            raise DataFormatError(
                f"{hemi} vertex indices exceed the mesh",
                expected=f"0..{sizes[hemi] - 1}",
                found=f"{vertex.min()}..{vertex.max()}",
            )
        full = np.full((sizes[hemi], *values.shape[1:]), fill, dtype=np.float32)
        full[vertex] = values[rows]
        images[hemi] = _surface_image(full, suffix)
    return {hemi: _save(images[hemi], targets[hemi]) for hemi in hemis}


def write_map(values: np.ndarray, dataset: Dataset, path: str | Path) -> Path | dict[str, Path]:
    """Write per-voxel values of a loaded dataset in its own space: NIfTI for volumes, surface maps otherwise.

    Volumes need ``dataset.meta["affine"]`` and ``["shape"]`` (set by the NIfTI and NSD volume loaders);
    surfaces need ``dataset.meta["n_vertices"]`` (fsaverage's 163,842 per hemisphere is assumed when the space
    is ``"fsaverage"`` and the loader did not record it); ``path`` then holds ``{hemi}``.
    """
    if {"i", "j", "k"} <= set(dataset.voxels.columns):
        if "affine" not in dataset.meta or "shape" not in dataset.meta:
            raise DataFormatError(
                "the dataset does not record its volume grid",
                expected="meta affine and shape",
                found=f"meta keys {sorted(dataset.meta)}",
                fix="use write_volume(reference=...)",
            )
        return write_volume(
            values, dataset.voxels, path, reference=dataset.meta["affine"], shape=dataset.meta["shape"]
        )
    n_vertices = dataset.meta.get("n_vertices")
    if n_vertices is None and dataset.space == "fsaverage":
        n_vertices = N_VERTICES["fsaverage"]
    if n_vertices is None:
        raise DataFormatError(
            "the dataset does not record its mesh sizes",
            expected="meta n_vertices",
            fix="use write_surface(n_vertices=...)",
        )
    return write_surface(values, dataset.voxels, str(path), n_vertices=n_vertices)
