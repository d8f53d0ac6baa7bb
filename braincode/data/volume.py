"""NIfTI volumes: 4-D betas + a mask + one stimulus per volume -> a :class:`Dataset`.

Betas, mask and ROI volumes must share one grid (same shape and affine); unlike nilearn's maskers, nothing is
resampled and NaN values are an error rather than silently set to 0, so the voxels read are exactly the voxels
written back. Voxels come in C order of the grid, the order nilearn's maskers use.

The voxel table keeps each voxel's grid index (``i, j, k``), its world coordinate (``x, y, z``, mm) and its flat
C-order index in the grid (``vertex``); ``Dataset.meta`` keeps the grid's ``affine`` and ``shape``, so any
per-voxel result can be written back in place with :func:`braincode.io.write_volume`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.affines import apply_affine

from braincode import atlases
from braincode.data._maps import PathLike, as_stimuli, divisor, listing, resolve_labels
from braincode.data.core import Dataset, Responses, Split, Stimuli
from braincode.data.rois import with_rois
from braincode.errors import DataFormatError, MissingFileError

logger = logging.getLogger(__name__)

ImageLike = PathLike | nib.spatialimages.SpatialImage

#: Largest difference between two affines (mm) still taken as the same grid.
AFFINE_TOLERANCE = 1e-3


def read_image(image: ImageLike, *, what: str) -> nib.spatialimages.SpatialImage:
    """Open a NIfTI (or other nibabel volume) file lazily, with an error listing the folder when it is absent."""
    if isinstance(image, nib.spatialimages.SpatialImage):
        return image
    path = Path(image)
    if not path.is_file():
        raise MissingFileError(
            f"{what} not found", path=path, found=listing(path.parent), fix="check the path"
        )
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise DataFormatError(
            f"cannot read the {what}", path=path, expected="a NIfTI file (.nii or .nii.gz)", found=str(exc)
        ) from exc


def _name(image: ImageLike) -> str:
    filename = image.get_filename() if isinstance(image, nib.spatialimages.SpatialImage) else image
    return str(filename or "<in-memory image>")


def check_grid(
    img: nib.spatialimages.SpatialImage, reference: nib.spatialimages.SpatialImage, what: str
) -> None:
    """Raise unless ``img`` lies on ``reference``'s voxel grid (same 3-D shape and affine)."""
    if img.shape[:3] != reference.shape[:3]:
        raise DataFormatError(
            f"the {what} and the mask have different grids",
            path=_name(img),
            expected=f"spatial shape {reference.shape[:3]} (as {_name(reference)})",
            found=f"{img.shape[:3]}",
            fix="use files of the same space, or resample with nilearn.image.resample_to_img",
        )
    if not np.allclose(img.affine, reference.affine, atol=AFFINE_TOLERANCE):
        raise DataFormatError(
            f"the {what} and the mask have different affines",
            path=_name(img),
            expected=f"the affine of {_name(reference)}, {np.round(reference.affine, 4).tolist()}",
            found=f"{np.round(img.affine, 4).tolist()}",
            fix="use files of the same space, or resample with nilearn.image.resample_to_img",
        )


def _check_rank(img: nib.spatialimages.SpatialImage, ndim: int, what: str, expected: str) -> None:
    if img.ndim != ndim:
        raise DataFormatError(
            f"the {what} has the wrong number of dimensions",
            path=_name(img),
            expected=expected,
            found=f"{img.ndim}-D, shape {img.shape}",
            fix="pass a 4-D image (X, Y, Z, samples), e.g. from nilearn.image.concat_imgs"
            if ndim == 4
            else "pass a 3-D image",
        )


def mask_voxels(mask: ImageLike) -> tuple[nib.Nifti1Image, pd.DataFrame]:
    """Binary mask image (``value > 0``) and its voxel table, in the order nilearn's maskers return voxels.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> m = np.zeros((2, 2, 2)); m[1, 0, 1] = m[0, 1, 0] = 1
    >>> _, vox = mask_voxels(nib.Nifti1Image(m, np.eye(4)))
    >>> vox[["vertex", "i", "j", "k"]].values.tolist()
    [[2, 0, 1, 0], [5, 1, 0, 1]]
    """
    img = read_image(mask, what="mask")
    _check_rank(img, 3, "mask", "a 3-D mask (X, Y, Z); voxels > 0 are kept")
    inside = np.asarray(img.dataobj) > 0
    if not inside.any():
        raise DataFormatError("the mask selects no voxel", path=_name(img), expected="some values > 0")
    ijk = np.argwhere(inside)
    xyz = apply_affine(img.affine, ijk)
    voxels = pd.DataFrame(
        {
            "hemisphere": "",
            "vertex": np.ravel_multi_index(tuple(ijk.T), inside.shape),
            **{c: ijk[:, n] for n, c in enumerate("ijk")},
            **{c: xyz[:, n] for n, c in enumerate("xyz")},
        }
    )
    return nib.Nifti1Image(inside.astype(np.uint8), img.affine), voxels


def sample_volume(
    image: ImageLike, voxels: pd.DataFrame, reference: nib.spatialimages.SpatialImage, what: str
):
    """Values of a 3-D image at the voxel table's ``i, j, k`` (the image must be on ``reference``'s grid)."""
    img = read_image(image, what=what)
    _check_rank(img, 3, what, "a 3-D image")
    check_grid(img, reference, what)
    return np.asarray(img.dataobj)[voxels["i"].to_numpy(), voxels["j"].to_numpy(), voxels["k"].to_numpy()]


def roi_columns(
    rois: Mapping[str, ImageLike],
    voxels: pd.DataFrame,
    reference: nib.spatialimages.SpatialImage,
    labels: Mapping[str, Mapping[int, str] | PathLike] | None = None,
) -> dict[str, np.ndarray]:
    """One string column per ROI family, read from label volumes (``-1`` outside the brain, ``0`` unlabelled)."""
    labels = labels or {}
    columns = {}
    for family, image in rois.items():
        values = sample_volume(image, voxels, reference, f"{family} ROI volume")
        table = resolve_labels(family, labels.get(family), _name(image))
        columns[family] = atlases.label_names(values, table, source=_name(image)).astype(str)
    return columns


def load_nifti(
    betas: ImageLike | Sequence[ImageLike],
    mask: ImageLike,
    stimuli: Stimuli | Sequence[PathLike] | PathLike,
    *,
    scale: float | None = None,
    rois: Mapping[str, ImageLike] | None = None,
    roi_labels: Mapping[str, Mapping[int, str] | PathLike] | None = None,
    noise_ceiling: ImageLike | None = None,
    subject: str = "subject",
    space: str = "volume",
    split: str = "train",
) -> Dataset:
    """Load 4-D NIfTI betas inside a mask, one stimulus per volume.

    Parameters
    ----------
    betas : path or image, or a sequence of them
        4-D images (X, Y, Z, samples); several are concatenated along samples (e.g. one per session).
    mask : path or image
        3-D image on the same grid; voxels with values > 0 are kept (NSD's ``nsdgeneral.nii.gz`` works as is).
    stimuli : Stimuli, list of image paths, or a text file listing them
        One per sample, in the order of the volumes.
    scale : float, optional
        Divide the stored values by this. Required for integer data without a header scale
        (NSD's int16 betas: 300 gives percent signal change).
    rois : dict of family -> label volume, optional
        E.g. ``{"prf-visualrois": ".../roi/prf-visualrois.nii.gz"}``.
    roi_labels : dict of family -> (dict of int -> name, or ``.ctab`` path), optional
        Label names; braincode's NSD atlas is used for the NSD families otherwise.
    noise_ceiling : path or image, optional
        Per-voxel noise ceiling (fraction 0..1) stored in the voxel table's ``noise_ceiling`` column.
    subject, space, split : str
        Dataset subject and space, and the name of the single split.

    Returns
    -------
    Dataset
        One split with float32 responses (n_samples, n_voxels); ``meta`` holds ``affine`` and ``shape``.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> affine = np.diag([2.0, 2.0, 2.0, 1.0])
    >>> betas = nib.Nifti1Image(np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype("float32"), affine)
    >>> mask = nib.Nifti1Image(np.ones((3, 3, 2), "uint8"), affine)
    >>> ds = load_nifti(betas, mask, ["a.png", "b.png", "c.png", "d.png"])
    >>> ds["train"].responses.shape, ds.meta["shape"]
    ((4, 18), (3, 3, 2))
    """
    mask_src = read_image(mask, what="mask")
    mask_img, voxels = mask_voxels(mask_src)
    inside = np.asarray(mask_img.dataobj) > 0
    images = list(betas) if isinstance(betas, Sequence) and not isinstance(betas, str) else [betas]
    blocks = []
    for image in images:
        img = read_image(image, what="betas")
        _check_rank(img, 4, "betas", "a 4-D image (X, Y, Z, samples)")
        check_grid(img, mask_src, "betas")
        slope = img.header.get_slope_inter()[0] if hasattr(img.header, "get_slope_inter") else None
        by = divisor(img.get_data_dtype(), scale, _name(img), scaled_in_header=slope not in (None, 1.0))
        blocks.append(img.get_fdata(dtype=np.float32)[inside].T / np.float32(by))
    data = np.concatenate(blocks)
    if not np.isfinite(data).all():
        raise DataFormatError(
            "the betas hold NaN or infinite values inside the mask",
            path=", ".join(_name(i) for i in images),
            fix="shrink the mask to voxels with valid data",
        )
    voxels = with_rois(voxels, roi_columns(rois or {}, voxels, mask_src, roi_labels))
    if noise_ceiling is not None:
        voxels["noise_ceiling"] = sample_volume(
            noise_ceiling, voxels, mask_src, "noise-ceiling volume"
        ).astype(float)
    stim = as_stimuli(stimuli, data.shape[0], _name(images[0]))
    logger.info("loaded %d samples x %d voxels from %d NIfTI file(s)", *data.shape, len(blocks))
    return Dataset(
        splits={split: Split(stim, Responses(data, voxels))},
        voxels=voxels,
        subject=subject,
        space=space,
        meta={"affine": mask_img.affine.copy(), "shape": tuple(int(s) for s in mask_img.shape),
              "source": _name(images[0])},
    )
