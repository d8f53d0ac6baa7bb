"""Loader, validator and prediction writer for the Algonauts 2023 challenge layout.

Layout of one subject (``NN`` = 01..08)::

    <root>/subjNN/training_split/training_images/train-XXXX_nsd-XXXXX.png
    <root>/subjNN/training_split/training_fmri/{lh,rh}_training_fmri.npy      (n_train, n_vertices_hemi)
    <root>/subjNN/test_split/test_images/test-XXXX_nsd-XXXXX.png
    <root>/subjNN/roi_masks/{lh,rh}.<family>_challenge_space.npy              integer labels, 0 = none
    <root>/subjNN/roi_masks/mapping_<family>.npy                              pickled dict label -> name
    <root>/subjNN/roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy         0/1 over 163842 fsaverage vertices
    <root>/subjNN/captions.csv                                                optional: image,caption

Every check raises one :class:`~braincode.errors.BraincodeError` naming the file, what was expected, what was
found and how to fix it; :func:`validate_algonauts` runs them all and returns every message. Reading writes
nothing.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from PIL import Image

from braincode.data._npy import read_array, read_label_mapping, save_arrays_atomic
from braincode.data.checks import check_samples
from braincode.data.core import Dataset, Responses, Split, Stimuli
from braincode.data.rois import FAMILIES, with_rois
from braincode.errors import BraincodeError, ConfigError, DataFormatError, MissingFileError
from braincode.progress import progress

logger = logging.getLogger(__name__)

HEMISPHERES = ("lh", "rh")
#: Number of vertices of one fsaverage hemisphere.
N_FSAVERAGE = 163842
SPLITS = {"train": ("training_split", "training_images"), "test": ("test_split", "test_images")}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DOWNLOAD_FIX = "download the subject's full Algonauts 2023 folder again (https://algonauts.csail.mit.edu)"
_SHOW = 5  # how many offending items a message lists
T = TypeVar("T")


def subject_id(subject: str | int) -> str:
    """Normalise a subject given as ``"subj01"``, ``"01"``, ``"1"`` or ``1`` to ``"subj01"``.

    Examples
    --------
    >>> subject_id(1), subject_id("1"), subject_id("subj01")
    ('subj01', 'subj01', 'subj01')
    """
    match = re.fullmatch(r"(?:subj)?0*(\d+)", str(subject).strip())
    if match is None or isinstance(subject, bool):
        raise ConfigError(
            f"cannot read {subject!r} as a subject",
            expected="'subj01', '1' or 1",
            found=repr(subject),
            fix="pass the subject number or folder name, e.g. subject='subj01'",
        )
    return f"subj{int(match.group(1)):02d}"


def subject_dir(root: str | Path, subject: str | int) -> Path:
    """Return ``<root>/subjNN``, or raise :class:`MissingFileError` listing the subjects that are there.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "subj01").mkdir()
    >>> subject_dir(root, 1).name
    'subj01'
    """
    root = Path(root)
    path = root / subject_id(subject)
    if path.is_dir():
        return path
    if not root.is_dir():
        raise MissingFileError(
            "the data folder does not exist",
            path=root,
            expected="a folder holding subjNN/ folders of the Algonauts 2023 challenge",
            found="nothing",
            fix="pass the folder that contains subj01/, subj02/, ...",
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and re.fullmatch(r"subj\d+", p.name))
    raise MissingFileError(
        "no folder for this subject",
        path=path,
        expected=f"a folder {path.name}/ in {root}",
        found=f"subjects {found}" if found else "no subjNN/ folders at all",
        fix="pick one of the subjects found"
        if found
        else "pass the folder that contains subj01/, subj02/, ...",
    )


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
            fix=_DOWNLOAD_FIX,
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
            found=f"{len(odd)}: {odd[:_SHOW]}{' ...' if len(odd) > _SHOW else ''}",
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
    data = read_array(path, what=f"{hemi} training fMRI", fix=_DOWNLOAD_FIX, mmap=True)
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
    first = ", ".join(f"({i}, {j})" for i, j in zip(r[:_SHOW], c[:_SHOW]))
    raise DataFormatError(
        f"the training fMRI holds {r.size} NaN/inf values in {bad_rows.size} rows and {bad_cols.size} columns",
        path=path,
        expected="finite numbers only",
        found=f"non-finite values at (row, column) {first}{' ...' if r.size > _SHOW else ''}; rows "
        f"{bad_rows[:_SHOW].tolist()}, columns {bad_cols[:_SHOW].tolist()}",
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
        detail += f"; no image numbered {missing[:_SHOW]}{' ...' if len(missing) > _SHOW else ''}"
    if extra:
        detail += (
            f"; images numbered beyond the fMRI rows: {extra[:_SHOW]}{' ...' if len(extra) > _SHOW else ''}"
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
    mask = read_array(path, what=f"{hemi} all-vertices fsaverage mask", fix=_DOWNLOAD_FIX)
    values = np.unique(mask) if mask.dtype.kind in "biuf" else None
    if mask.shape != (N_FSAVERAGE,) or values is None or not np.isin(values, (0, 1)).all():
        raise DataFormatError(
            "the all-vertices mask is not a 0/1 mask over fsaverage",
            path=path,
            expected=f"a boolean or 0/1 array of shape ({N_FSAVERAGE},)",
            found=f"shape {mask.shape}, dtype {mask.dtype}"
            + (f", values {values[:_SHOW].tolist()}" if values is not None else ""),
            fix=_DOWNLOAD_FIX,
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
            fix=_DOWNLOAD_FIX,
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
            found=f"labels {unknown[:_SHOW]}",
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


# ------------------------------------------------------------------------------------------- captions


def read_captions(path: Path, names: Sequence[str]) -> dict[str, str] | None:
    """Image file name -> caption from an optional ``captions.csv`` (columns image, caption) covering ``names``.

    Returns None when the file does not exist; raises :class:`DataFormatError` naming the file when it cannot
    be read, lacks a column, or does not give exactly one caption per image of ``names``.
    """
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            "the captions file cannot be read as CSV",
            path=path,
            expected="a CSV with header image,caption",
            found=f"{type(exc).__name__}: {exc}",
            fix="save it as UTF-8 CSV with columns image,caption",
        ) from exc
    if not {"image", "caption"} <= set(table.columns):
        raise DataFormatError(
            "the captions file lacks columns",
            path=path,
            expected="columns image,caption",
            found=f"columns {list(table.columns)}",
            fix="name the columns image (the image file name) and caption",
        )
    duplicated = table["image"][table["image"].duplicated()].tolist()
    missing = sorted(set(names) - set(table["image"]))
    if duplicated or missing:
        raise DataFormatError(
            "the captions file does not give exactly one caption per image",
            path=path,
            expected="one row per training and test image",
            found=(f"no caption for {missing[:_SHOW]} ({len(missing)} images)" if missing else "")
            + ("; " if missing and duplicated else "")
            + (f"several rows for {duplicated[:_SHOW]}" if duplicated else ""),
            fix="add the missing rows or remove the duplicates",
        )
    return dict(zip(table["image"], table["caption"]))


# --------------------------------------------------------------------------------------------- public


class _Checks:
    """Runs loading steps; either raises the first error (loading) or collects every message (validation)."""

    def __init__(self, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.problems: list[str] = []

    def __call__(self, step: Callable[..., T], *args: object) -> T | None:
        try:
            return step(*args)
        except BraincodeError as exc:
            if self.fail_fast:
                raise
            self.problems.append(str(exc))
            return None


def _read_subject(subj: Path, check: _Checks, check_images: bool) -> dict:
    """Every part of one subject's folder, each ``None`` where its check failed (only when collecting)."""
    images = {split: check(_list_images, subj, split) for split in SPLITS}
    for split, paths in images.items():
        if paths is not None:
            check(_check_strays, subj, split)
            for path in progress(paths, desc=f"checking {split} images", enabled=check_images):
                check(_check_image, path, check_images)
    responses = {hemi: check(_open_responses, subj, hemi) for hemi in HEMISPHERES}
    for hemi, data in responses.items():
        if data is not None:
            check(_check_finite, data, _fmri_path(subj, hemi))
    present = {hemi: data.shape[0] for hemi, data in responses.items() if data is not None}
    if present and images["train"] is not None:
        hemi, n_rows = next(iter(present.items()))
        check(_check_rows, subj, hemi, n_rows, images["train"])
    if len(set(present.values())) > 1:
        check(_check_hemisphere_rows, subj, present)
    vertices = {
        hemi: check(_read_vertices, subj, hemi, None if data is None else data.shape[1])
        for hemi, data in responses.items()
    }
    counts = {
        hemi: responses[hemi].shape[1]
        if responses[hemi] is not None
        else getattr(vertices[hemi], "size", None)
        for hemi in HEMISPHERES
    }
    families = {}
    for family in _present_families(subj):
        mapping = check(_read_mapping, subj, family)
        families[family] = {
            hemi: check(_read_family, subj, family, hemi, n, mapping)
            for hemi, n in counts.items()
            if n is not None
        }
    captions = None
    if all(paths is not None for paths in images.values()):
        captions = check(read_captions, subj / "captions.csv", [p.name for paths in images.values() for p in paths])
    return {
        "images": images,
        "responses": responses,
        "vertices": vertices,
        "families": families,
        "captions": captions,
    }


def validate_algonauts(root: str | Path, subject: str | int, *, n_folds: int = 5) -> list[str]:
    """Check one subject's Algonauts 2023 folder completely and return every problem found.

    Runs every check of :func:`load_algonauts` - and also decodes every image with PIL - without stopping at
    the first problem, and checks that there are enough training images for ``n_folds``-fold cross-validation
    (:func:`~braincode.data.checks.min_samples`). Each message names the file, what was expected, what was found
    and how to fix it.

    Parameters
    ----------
    root : str or Path
        The folder holding ``subj01/``, ``subj02/``, ...
    subject : str or int
        ``"subj01"``, ``"1"`` or ``1``.
    n_folds : int, default 5
        Cross-validation folds the fit will use.

    Returns
    -------
    list of str
        One message per defect; empty when the folder is fine.

    Examples
    --------
    >>> import tempfile
    >>> from braincode.data.synthetic import make_synthetic
    >>> root = make_synthetic(tempfile.mkdtemp(), n_train=20, n_test=5)
    >>> validate_algonauts(root, 1)
    []
    """
    try:
        subj = subject_dir(root, subject)
    except BraincodeError as exc:
        return [str(exc)]
    check = _Checks(fail_fast=False)
    parts = _read_subject(subj, check, check_images=True)
    if parts["images"]["train"] is not None:
        check(check_samples, len(parts["images"]["train"]), n_folds, _image_dir(subj, "train"))
    return check.problems


def load_algonauts(root: str | Path, subject: str | int, *, check_images: bool = False) -> Dataset:
    """Load one subject of the Algonauts 2023 challenge, checking the whole layout.

    Parameters
    ----------
    root : str or Path
        The folder holding ``subj01/``, ``subj02/``, ... (see the module docstring for the layout).
    subject : str or int
        ``"subj01"``, ``"1"`` or ``1``.
    check_images : bool, default False
        Also decode-check every image with PIL (slower; :func:`validate_algonauts` always does). Without it,
        only file names and PNG signatures are checked here; a corrupt image then fails when it is opened.

    Returns
    -------
    Dataset
        ``subject`` ``"subjNN"``, ``space`` ``"fsaverage"``, splits ``"train"`` (image paths sorted by file
        name, captions if ``captions.csv`` exists, and float32 responses with the left hemisphere's columns
        first) and ``"test"`` (no responses). ``voxels`` has columns ``hemisphere`` (``"lh"``/``"rh"``),
        ``vertex`` (fsaverage index) and one string column ``roi:<family>`` per ROI family present (``""``
        outside every ROI; :mod:`braincode.data.rois`).
        ``meta`` holds ``root``, ``nsd_ids`` (split -> NSD image ids), ``n_vertices`` (hemisphere -> 163842,
        the fsaverage mesh size), ``source`` (the training image folder) and ``captions_path``
        (``subjNN/captions.csv``, read when it exists).

    Raises
    ------
    MissingFileError
        When the subject folder (the message lists those found), an image folder, a training fMRI file, an
        all-vertices mask or an ROI mapping that a mask needs is absent.
    DataFormatError
        For NaN/inf responses, a row count that differs from the number of images, a truncated or corrupt
        ``.npy``, a non-numeric or non-2-D fMRI array, a mask of the wrong length or with labels its mapping
        lacks, a non-image file among the images, or an unusable ``captions.csv``.
    ConfigError
        When ``subject`` cannot be read as a subject.

    Examples
    --------
    >>> import tempfile
    >>> from braincode.data.synthetic import make_synthetic
    >>> root = make_synthetic(tempfile.mkdtemp(), n_train=20, n_test=5)
    >>> ds = load_algonauts(root, "subj01")
    >>> ds["train"].responses.shape[0], len(ds["test"].stimuli), ds["test"].responses is None
    (20, 5, True)
    >>> list(ds.voxels.columns[:3])
    ['hemisphere', 'vertex', 'roi:prf-visualrois']
    """
    subj = subject_dir(root, subject)
    parts = _read_subject(subj, _Checks(fail_fast=True), check_images)
    responses = parts["responses"]
    data = np.empty((responses["lh"].shape[0], sum(r.shape[1] for r in responses.values())), np.float32)
    start = 0
    for block in responses.values():
        data[:, start : start + block.shape[1]] = block
        start += block.shape[1]
    voxels = _voxel_table(parts["vertices"], parts["families"])
    captions = parts["captions"]
    splits, nsd_ids = {}, {}
    for split, paths in parts["images"].items():
        stimuli = Stimuli(
            ids=[p.stem for p in paths],
            paths=paths,
            captions=None if captions is None else [captions[p.name] for p in paths],
        )
        splits[split] = Split(stimuli, Responses(data, voxels) if split == "train" else None)
        nsd_ids[split] = np.array(_image_numbers(paths)[1], dtype=np.int64)
    logger.info(
        "loaded %s: %d train and %d test images, %d vertices (%s), ROI families %s",
        subj,
        len(splits["train"].stimuli),
        len(splits["test"].stimuli),
        len(voxels),
        ", ".join(f"{h} {v.size}" for h, v in parts["vertices"].items()),
        list(parts["families"]),
    )
    return Dataset(
        splits=splits,
        voxels=voxels,
        subject=subj.name,
        space="fsaverage",
        meta={"root": Path(root), "nsd_ids": nsd_ids, "n_vertices": dict.fromkeys(HEMISPHERES, N_FSAVERAGE),
              "source": _image_dir(subj, "train"), "captions_path": subj / "captions.csv"},
    )


def hemisphere_slices(voxels: pd.DataFrame) -> dict[str, slice]:
    """Column range of each hemisphere in the responses (hemispheres must be contiguous, lh first).

    Parameters
    ----------
    voxels : DataFrame
        A voxel table with a ``hemisphere`` column, e.g. ``Dataset.voxels``.

    Returns
    -------
    dict of str to slice
        ``{"lh": slice(0, n_lh), "rh": slice(n_lh, n_lh + n_rh)}`` for the hemispheres present.

    Examples
    --------
    >>> import pandas as pd
    >>> hemisphere_slices(pd.DataFrame({"hemisphere": ["lh", "lh", "rh"], "vertex": [0, 5, 2]}))
    {'lh': slice(0, 2, None), 'rh': slice(2, 3, None)}
    """
    hemi = voxels["hemisphere"].to_numpy()
    slices = {}
    for h in HEMISPHERES:
        idx = np.flatnonzero(hemi == h)
        if idx.size == 0:
            continue
        if idx[-1] - idx[0] + 1 != idx.size:
            raise DataFormatError(
                f"the {h} voxels are not contiguous in the voxel table",
                expected="all lh rows first, then all rh rows",
                found=f"{h} rows between {idx[0]} and {idx[-1]} interleaved with others",
                fix="order the voxel table (and the response columns) by hemisphere",
            )
        slices[h] = slice(int(idx[0]), int(idx[-1]) + 1)
    others = sorted(set(hemi.tolist()) - set(HEMISPHERES))
    if others:
        raise DataFormatError(
            "the voxel table has unknown hemispheres",
            expected="'lh' or 'rh'",
            found=f"{others[:_SHOW]}",
            fix="use the voxel table of a surface (fsaverage) dataset",
        )
    return slices


def write_algonauts_predictions(
    out_dir: str | Path, predictions: np.ndarray, voxels: pd.DataFrame
) -> dict[str, Path]:
    """Write test-set predictions as the challenge's ``lh_pred_test.npy`` and ``rh_pred_test.npy``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created if needed), e.g. ``submission/subj01``.
    predictions : ndarray of shape (n_test, n_voxels)
        Predicted responses, columns ordered as ``voxels`` (lh then rh).
    voxels : DataFrame
        The dataset's voxel table.

    Returns
    -------
    dict of str to Path
        Hemisphere -> written file (float32, shape (n_test, n_vertices of that hemisphere)). Both files are
        written to temporary names first and then renamed, so a failure leaves neither behind.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile
    >>> voxels = pd.DataFrame({"hemisphere": ["lh", "lh", "rh"], "vertex": [0, 5, 2]})
    >>> paths = write_algonauts_predictions(tempfile.mkdtemp(), np.zeros((4, 3)), voxels)
    >>> np.load(paths["lh"]).shape, np.load(paths["rh"]).dtype
    ((4, 2), dtype('float32'))
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[1] != len(voxels) or predictions.dtype.kind not in "fiu":
        raise DataFormatError(
            "predictions do not match the voxel table",
            expected=f"a numeric array of shape (n_test, {len(voxels)})",
            found=f"shape {predictions.shape}, dtype {predictions.dtype}",
            fix="predict every voxel of the dataset, columns in the order of Dataset.voxels",
        )
    if not np.isfinite(predictions).all():
        bad = np.unique(np.nonzero(~np.isfinite(predictions))[1])
        raise DataFormatError(
            "predictions hold NaN or inf",
            expected="finite numbers",
            found=f"non-finite values in columns {bad[:_SHOW].tolist()}",
            fix="check the model's inputs and fit; the challenge rejects non-finite predictions",
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {h: out / f"{h}_pred_test.npy" for h in hemisphere_slices(voxels)}
    save_arrays_atomic(
        {files[h]: predictions[:, s].astype(np.float32) for h, s in hemisphere_slices(voxels).items()}
    )
    return files
