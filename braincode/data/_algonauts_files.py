"""The files of one Algonauts 2023 subject folder, each read and checked on its own (used by :mod:`.algonauts`).

Every function raises one :class:`~braincode.errors.BraincodeError` naming the file, what was expected, what
was found and how to fix it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from braincode.atlases import N_VERTICES
from braincode.data._npy import read_array, read_label_mapping
from braincode.data.core import HEMISPHERES
from braincode.data.rois import FAMILIES, with_rois
from braincode.errors import DataFormatError, MissingFileError

SPLITS = {"train": ("training_split", "training_images"), "test": ("test_split", "test_images")}
N_FSAVERAGE = N_VERTICES["fsaverage"]
DOWNLOAD_FIX = "download the subject's full Algonauts 2023 folder again (https://algonauts.csail.mit.edu)"
SHOW = 5  # how many offending items a message lists
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------- images


def _image_dir(subj: Path, split: str) -> Path:
    return subj.joinpath(*SPLITS[split])


def _image_pattern(split: str) -> re.Pattern:
    return re.compile(rf"{split}-\d+_nsd-\d+\.png")


def _list_images(subj: Path, split: str) -> list[Path]:
    """The split's challenge-named image files (``train-XXXX_nsd-XXXXX.png``), sorted by name."""
    folder = _image_dir(subj, split)
    if not folder.is_dir():
        raise MissingFileError(
            f"the {split} image folder is missing",
            path=folder,
            expected=f"a folder of {split}-XXXX_nsd-XXXXX.png images",
            found="nothing",
            fix=DOWNLOAD_FIX,
        )
    pattern = _image_pattern(split)
    return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file())


def _check_strays(subj: Path, split: str) -> None:
    """Every visible entry of the image folder must be a challenge image."""
    folder, pattern = _image_dir(subj, split), _image_pattern(split)
    odd = sorted(
        p.name
        for p in folder.iterdir()
        if not p.name.startswith(".") and not (pattern.fullmatch(p.name) and p.is_file())
    )
    if odd:
        raise DataFormatError(
            f"the {split} image folder holds files that are not challenge images",
            path=folder,
            expected=f"only files named {split}-XXXX_nsd-XXXXX.png",
            found=f"{len(odd)}: {odd[:SHOW]}{' ...' if len(odd) > SHOW else ''}",
            fix="move the other files out of the folder",
        )


def _check_image(path: Path, decode: bool) -> None:
    """Check that an image file starts with the PNG signature; with ``decode``, also let PIL verify it."""
    with open(path, "rb") as fp:
        head = fp.read(len(_PNG_SIGNATURE))
    if head != _PNG_SIGNATURE:
        raise DataFormatError(
            "the stimulus image is not a PNG file",
            path=path,
            expected="a PNG image (file signature 89 50 4E 47 0D 0A 1A 0A)",
            found=f"a file starting with {head.hex(' ').upper() or 'nothing (empty file)'}",
            fix="replace the file with the challenge's original image (re-download it)",
        )
    if not decode:
        return
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        raise DataFormatError(
            "the stimulus image is unreadable",
            path=path,
            expected="a valid PNG image",
            found=f"{type(exc).__name__}: {exc}",
            fix="replace the file with the challenge's original image (re-download it)",
        ) from exc


def _image_numbers(paths: Sequence[Path]) -> tuple[list[int], list[int]]:
    """Split each ``train-0001_nsd-00013.png`` name into its running number and its NSD id."""
    parts = [re.findall(r"\d+", p.name) for p in paths]
    return [int(a) for a, _ in parts], [int(b) for _, b in parts]


# -------------------------------------------------------------------------------------------- responses


def _fmri_path(subj: Path, hemi: str) -> Path:
    return subj / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy"


def _open_responses(subj: Path, hemi: str) -> np.ndarray:
    """Memory-map one hemisphere's training fMRI and check its dtype and rank (values: :func:`_check_finite`)."""
    path = _fmri_path(subj, hemi)
    data = read_array(path, what=f"{hemi} training fMRI", fix=DOWNLOAD_FIX, mmap=True)
    if data.dtype.kind not in "fiu":
        raise DataFormatError(
            "the training fMRI is not numeric",
            path=path,
            expected="a float array (n_train_images, n_vertices)",
            found=f"dtype {data.dtype}",
            fix="save the responses as float32, e.g. np.save(path, x.astype(np.float32))",
        )
    if data.ndim != 2:
        raise DataFormatError(
            "the training fMRI is not a 2-D array",
            path=path,
            expected="shape (n_train_images, n_vertices)",
            found=f"shape {data.shape}",
            fix="save one row per training image and one column per vertex",
        )
    return data


def _check_finite(data: np.ndarray, path: Path, chunk: int = 1024) -> None:
    """Raise naming the first rows/columns that hold NaN or inf (also values that overflow float32)."""
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, data.shape[0], chunk):
        bad = ~np.isfinite(np.asarray(data[start : start + chunk], dtype=np.float32))
        if bad.any():
            r, c = np.nonzero(bad)
            rows.append(r + start)
            cols.append(c)
    if not rows:
        return
    r, c = np.concatenate(rows), np.concatenate(cols)
    bad_rows, bad_cols = np.unique(r), np.unique(c)
    first = ", ".join(f"({i}, {j})" for i, j in zip(r[:SHOW], c[:SHOW]))
    raise DataFormatError(
        f"the training fMRI holds {r.size} NaN/inf values in {bad_rows.size} rows and {bad_cols.size} columns",
        path=path,
        expected="finite numbers only",
        found=f"non-finite values at (row, column) {first}{' ...' if r.size > SHOW else ''}; rows "
        f"{bad_rows[:SHOW].tolist()}, columns {bad_cols[:SHOW].tolist()}",
        fix="re-download the file, or drop/impute those images or vertices before saving",
    )


def _check_rows(subj: Path, hemi: str, n_rows: int, images: Sequence[Path]) -> None:
    """The fMRI must have exactly one row per training image, numbered 1..n."""
    numbers, _ = _image_numbers(images)
    if n_rows == len(images) and numbers == list(range(1, n_rows + 1)):
        return
    missing = sorted(set(range(1, n_rows + 1)) - set(numbers))
    extra = sorted(set(numbers) - set(range(1, n_rows + 1)))
    detail = f"{len(images)} images in {_image_dir(subj, 'train')}"
    if missing:
        detail += f"; no image numbered {missing[:SHOW]}{' ...' if len(missing) > SHOW else ''}"
    if extra:
        detail += (
            f"; images numbered beyond the fMRI rows: {extra[:SHOW]}{' ...' if len(extra) > SHOW else ''}"
        )
    raise DataFormatError(
        "the number of training images and of fMRI rows differ",
        path=_fmri_path(subj, hemi),
        expected=f"{n_rows} images train-0001..train-{n_rows:04d} (one per fMRI row)",
        found=detail,
        fix="restore the missing images, or use the fMRI file that belongs to this image folder",
    )


def _check_hemisphere_rows(subj: Path, rows: dict[str, int]) -> None:
    raise DataFormatError(
        "the two hemispheres' training fMRI have different numbers of rows",
        path=_fmri_path(subj, "rh"),
        expected=f"{rows['lh']} rows, as in {_fmri_path(subj, 'lh').name}",
        found=f"{rows['rh']}",
        fix="use the lh and rh files of the same subject and split",
    )


# --------------------------------------------------------------------------------------------- voxels


def _roi_dir(subj: Path) -> Path:
    return subj / "roi_masks"


def _present_families(subj: Path) -> list[str]:
    """ROI families with a challenge-space mask in either hemisphere, known families first."""
    names = {
        m.group(1)
        for p in (_roi_dir(subj).glob("*_challenge_space.npy") if _roi_dir(subj).is_dir() else [])
        if (m := re.fullmatch(r"(?:lh|rh)\.(.+)_challenge_space\.npy", p.name))
    }
    return [f for f in FAMILIES if f in names] + sorted(names - set(FAMILIES))


def _read_vertices(subj: Path, hemi: str, n_columns: int | None) -> np.ndarray:
    """fsaverage indices of the hemisphere's challenge-space vertices, from its all-vertices mask.

    ``n_columns`` (the fMRI's column count, when known) must equal the number of vertices the mask sets.
    """
    path = _roi_dir(subj) / f"{hemi}.all-vertices_fsaverage_space.npy"
    mask = read_array(path, what=f"{hemi} all-vertices fsaverage mask", fix=DOWNLOAD_FIX)
    values = np.unique(mask) if mask.dtype.kind in "biuf" else None
    if mask.shape != (N_FSAVERAGE,) or values is None or not np.isin(values, (0, 1)).all():
        raise DataFormatError(
            "the all-vertices mask is not a 0/1 mask over fsaverage",
            path=path,
            expected=f"a boolean or 0/1 array of shape ({N_FSAVERAGE},)",
            found=f"shape {mask.shape}, dtype {mask.dtype}"
            + (f", values {values[:SHOW].tolist()}" if values is not None else ""),
            fix=DOWNLOAD_FIX,
        )
    vertices = np.flatnonzero(mask)
    if n_columns is not None and vertices.size != n_columns:
        raise DataFormatError(
            "the all-vertices mask and the training fMRI disagree on the number of vertices",
            path=path,
            expected=f"{n_columns} vertices set (one per column of {_fmri_path(subj, hemi).name})",
            found=f"{vertices.size}",
            fix="use the ROI masks and the fMRI of the same subject",
        )
    return vertices


def _read_mapping(subj: Path, family: str) -> dict[int, str]:
    """The family's label -> name mapping (restricted unpickler), with label 0 named ``""``."""
    path = _roi_dir(subj) / f"mapping_{family}.npy"
    masks = [f"{h}.{family}_challenge_space.npy" for h in HEMISPHERES]
    needing = " and ".join(m for m in masks if (_roi_dir(subj) / m).is_file())
    mapping = read_label_mapping(path, fix=f"add {path.name}: {needing} need it to name their labels")
    mapping[0] = ""
    return mapping


def _read_family(
    subj: Path, family: str, hemi: str, n_vertices: int, mapping: dict[int, str] | None
) -> np.ndarray | None:
    """ROI names (``""`` outside every ROI) of one family for one hemisphere's challenge-space vertices.

    Without a ``mapping`` (its own problem is reported elsewhere) only the mask itself is checked.
    """
    path = _roi_dir(subj) / f"{hemi}.{family}_challenge_space.npy"
    labels = read_array(
        path,
        what=f"{hemi} {family} ROI mask",
        fix=f"add the file, or remove the other hemisphere's {family} mask to drop the family",
    )
    if (
        labels.dtype.kind not in "biuf"
        or labels.ndim != 1
        or (labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))))
    ):
        raise DataFormatError(
            "the ROI mask does not hold integer labels",
            path=path,
            expected="a 1-D array of integer labels, one per challenge-space vertex (0 = no ROI)",
            found=f"shape {labels.shape}, dtype {labels.dtype}",
            fix=DOWNLOAD_FIX,
        )
    if labels.shape[0] != n_vertices:
        raise DataFormatError(
            "the ROI mask and the hemisphere have different numbers of vertices",
            path=path,
            expected=f"{n_vertices} labels (the {hemi} challenge-space vertex count)",
            found=f"{labels.shape[0]}",
            fix="use the mask that belongs to this subject (masks of other subjects have other lengths)",
        )
    if mapping is None:
        return None
    labels = labels.astype(np.int64)
    mapping_path = _roi_dir(subj) / f"mapping_{family}.npy"
    unknown = sorted(set(np.unique(labels).tolist()) - set(mapping))
    if unknown:
        raise DataFormatError(
            f"the ROI mask uses labels that {mapping_path.name} does not name",
            path=path,
            expected=f"labels among {sorted(mapping)}",
            found=f"labels {unknown[:SHOW]}",
            fix=f"use the {mapping_path.name} that belongs to this mask (re-download both)",
        )
    return np.array([mapping[k] for k in labels.tolist()], dtype=object)


def _voxel_table(
    hemi_vertices: dict[str, np.ndarray], families: dict[str, dict[str, np.ndarray]]
) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "hemisphere": np.concatenate([np.full(v.size, h) for h, v in hemi_vertices.items()]),
            "vertex": np.concatenate(list(hemi_vertices.values())).astype(np.int64),
        }
    )
    return with_rois(
        table, {family: np.concatenate([per_hemi[h] for h in hemi_vertices]) for family, per_hemi in families.items()}
    )

