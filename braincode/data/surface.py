"""Surface data: GIFTI (``.gii``) and FreeSurfer MGH (``.mgh``/``.mgz``) maps per hemisphere -> a :class:`Dataset`.

A surface file holds one value per vertex and sample: MGH as (n_vertices, 1, 1, n_samples) (NSD's
``{lh,rh}.betas_sessionNN.mgh``), GIFTI as one data array per sample (or one 2-D array). The voxel table keeps
``hemisphere`` and ``vertex`` (index within the hemisphere's mesh) and ``Dataset.meta["n_vertices"]`` the mesh
sizes, so any per-vertex result can be written back with :func:`braincode.io.write_surface`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braincode import atlases
from braincode.data._maps import PathLike, as_stimuli, divisor, listing, resolve_labels
from braincode.data.core import HEMISPHERES, Dataset, Responses, Split, Stimuli
from braincode.data.rois import with_rois
from braincode.errors import DataFormatError, MissingFileError

logger = logging.getLogger(__name__)

SURFACE_SUFFIXES = (".gii", ".mgh", ".mgz")


def read_surface_data(path: PathLike) -> tuple[np.ndarray, np.dtype]:
    """Read a GIFTI or MGH/MGZ surface map as an array (n_vertices, n_samples) and its stored dtype.

    Examples
    --------
    >>> import tempfile, pathlib, nibabel as nib, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "lh.betas.mgh"
    >>> nib.save(nib.MGHImage(np.ones((5, 1, 1, 3), "float32"), np.eye(4)), p)
    >>> data, dtype = read_surface_data(p)
    >>> data.shape, dtype.name
    ((5, 3), 'float32')
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            "surface file not found", path=path, found=listing(path.parent), fix="check the path"
        )
    if not path.name.endswith(SURFACE_SUFFIXES):
        raise DataFormatError(
            "unknown surface file type", path=path, expected=f"a file ending {SURFACE_SUFFIXES}"
        )
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise DataFormatError("cannot read the surface file", path=path, found=str(exc)) from exc
    if isinstance(img, nib.gifti.GiftiImage):
        if not img.darrays:
            raise DataFormatError("the GIFTI file holds no data array", path=path)
        arrays = [np.asarray(d.data) for d in img.darrays]
        data = arrays[0] if len(arrays) == 1 else np.column_stack(arrays)
        dtype = arrays[0].dtype
    else:
        data, dtype = np.asarray(img.dataobj), img.get_data_dtype()
        if data.ndim >= 3 and data.shape[1:3] == (1, 1):
            data = data.reshape(data.shape[0], *data.shape[3:])
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise DataFormatError(
            "a surface map must hold one value per vertex and sample",
            path=path,
            expected="(n_vertices, n_samples) or MGH (n_vertices, 1, 1, n_samples)",
            found=f"shape {np.asarray(img.dataobj).shape if hasattr(img, 'dataobj') else data.shape}",
            fix="pass a surface file (volume files belong to load_nifti)",
        )
    return data, np.dtype(dtype)


def _hemi(maps: Mapping[str, PathLike | np.ndarray], hemi: str, what: str) -> PathLike | np.ndarray:
    if hemi not in maps:
        raise DataFormatError(
            f"the {what} has no {hemi} map",
            expected=f"a dict with key {hemi!r}",
            found=f"keys {sorted(maps)}",
        )
    return maps[hemi]


def _vertex_values(source: PathLike | np.ndarray, n_vertices: int, what: str) -> np.ndarray:
    """One value per vertex from a surface file or an array, checked against the hemisphere's size."""
    values = np.asarray(source) if isinstance(source, np.ndarray) else read_surface_data(source)[0]
    values = values.reshape(values.shape[0], -1)
    if values.shape != (n_vertices, 1):
        raise DataFormatError(
            f"the {what} does not match the data's vertices",
            path=None if isinstance(source, np.ndarray) else source,
            expected=f"{n_vertices} vertices with one value each",
            found=f"shape {values.shape}",
            fix="use maps of the same surface (e.g. fsaverage: 163842 vertices per hemisphere)",
        )
    return values[:, 0]


def load_surface(
    data: Mapping[str, PathLike | Sequence[PathLike]],
    stimuli: Stimuli | Sequence[PathLike] | PathLike,
    *,
    mask: Mapping[str, PathLike | np.ndarray] | None = None,
    scale: float | None = None,
    rois: Mapping[str, Mapping[str, PathLike | np.ndarray]] | None = None,
    roi_labels: Mapping[str, Mapping[int, str] | PathLike] | None = None,
    noise_ceiling: Mapping[str, PathLike | np.ndarray] | None = None,
    subject: str = "subject",
    space: str = "fsaverage",
    split: str = "train",
) -> Dataset:
    """Load per-hemisphere surface maps (GIFTI or MGH), one stimulus per sample.

    Parameters
    ----------
    data : dict of hemisphere -> file or list of files
        E.g. ``{"lh": "lh.betas.mgh", "rh": "rh.betas.mgh"}``; several files per hemisphere are concatenated
        along samples (e.g. one per session). Hemispheres are ``"lh"`` and/or ``"rh"``.
    stimuli : Stimuli, list of image paths, or a text file listing them
        One per sample.
    mask : dict of hemisphere -> file or boolean array, optional
        Vertices with values > 0 are kept (all vertices otherwise).
    scale : float, optional
        Divide stored values by this; required for integer data.
    rois : dict of family -> (dict of hemisphere -> label file or array), optional
    roi_labels : dict of family -> (dict of int -> name, or ``.ctab`` path), optional
        Label names; braincode's NSD atlas is used for the NSD families otherwise.
    noise_ceiling : dict of hemisphere -> file or array, optional
        Per-vertex noise ceiling (fraction 0..1) for the voxel table's ``noise_ceiling`` column.
    subject, space, split : str

    Returns
    -------
    Dataset
        One split; responses have the ``lh`` columns first; ``meta["n_vertices"]`` maps hemisphere -> mesh size.

    Examples
    --------
    >>> import tempfile, pathlib, nibabel as nib, numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for h in ("lh", "rh"):
    ...     nib.save(nib.MGHImage(np.ones((6, 1, 1, 2), "float32"), np.eye(4)), d / f"{h}.betas.mgh")
    >>> ds = load_surface({h: d / f"{h}.betas.mgh" for h in ("lh", "rh")}, ["a.png", "b.png"],
    ...                   mask={"lh": np.arange(6) < 2, "rh": np.arange(6) < 3})
    >>> ds["train"].responses.shape, ds.meta["n_vertices"]
    ((2, 5), {'lh': 6, 'rh': 6})
    """
    unknown = sorted(set(data) - set(HEMISPHERES))
    if unknown or not data:
        raise DataFormatError(
            "surface data must be given per hemisphere",
            expected="keys 'lh' and/or 'rh'",
            found=f"{sorted(data)}",
        )
    hemis = [h for h in HEMISPHERES if h in data]
    blocks, tables, n_vertices = [], [], {}
    for hemi in hemis:
        files = [data[hemi]] if isinstance(data[hemi], (str, Path)) else list(data[hemi])
        arrays = [_scaled(read_surface_data(f), scale, f) for f in files]
        n_vertices[hemi] = arrays[0].shape[0]
        for f, a in zip(files, arrays):
            if a.shape[0] != n_vertices[hemi]:
                raise DataFormatError(
                    f"{hemi} files have different vertex counts",
                    path=f,
                    expected=f"{n_vertices[hemi]} (as {files[0]})",
                    found=f"{a.shape[0]}",
                )
        keep = np.ones(n_vertices[hemi], bool)
        if mask is not None and hemi in mask:
            keep = _vertex_values(mask[hemi], n_vertices[hemi], f"{hemi} mask") > 0
        vertex = np.flatnonzero(keep)
        blocks.append(np.concatenate([a[keep] for a in arrays], axis=1).T.astype(np.float32))
        names = {
            family: atlases.label_names(
                _vertex_values(
                    _hemi(per_hemi, hemi, f"{family} ROI"), n_vertices[hemi], f"{hemi} {family} ROI map"
                )[keep],
                resolve_labels(family, (roi_labels or {}).get(family)),
            )
            for family, per_hemi in (rois or {}).items()
        }
        table = with_rois(pd.DataFrame({"hemisphere": hemi, "vertex": vertex}), names)
        if noise_ceiling is not None:
            table["noise_ceiling"] = _vertex_values(
                _hemi(noise_ceiling, hemi, "noise ceiling"), n_vertices[hemi], "noise ceiling"
            )[keep]
        tables.append(table)
    samples = {b.shape[0] for b in blocks}
    if len(samples) != 1:
        raise DataFormatError(
            "the hemispheres have different numbers of samples",
            found=", ".join(f"{h}: {b.shape[0]}" for h, b in zip(hemis, blocks)),
        )
    responses = np.concatenate(blocks, axis=1)
    first = data[hemis[0]]
    voxels = pd.concat(tables, ignore_index=True)
    stim = as_stimuli(stimuli, responses.shape[0], next(iter(data.values())))
    logger.info("loaded %d samples x %d vertices (%s)", *responses.shape, ", ".join(hemis))
    return Dataset(
        splits={split: Split(stim, Responses(responses, voxels))},
        voxels=voxels,
        subject=subject,
        space=space,
        meta={"n_vertices": n_vertices, "source": first if isinstance(first, (str, Path)) else first[0]},
    )


def _scaled(read: tuple[np.ndarray, np.dtype], scale: float | None, path: PathLike) -> np.ndarray:
    data, dtype = read
    return data / divisor(dtype, scale, path)
