"""Loader and validator for the Algonauts 2023 challenge layout (the submission writer is :mod:`.predictions`).

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
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from braincode.data._algonauts_files import (
    N_FSAVERAGE,
    SPLITS,
    _check_finite,
    _check_hemisphere_rows,
    _check_image,
    _check_rows,
    _check_strays,
    _fmri_path,
    _image_dir,
    _image_numbers,
    _list_images,
    _open_responses,
    _present_families,
    _read_family,
    _read_mapping,
    _read_vertices,
    _voxel_table,
)
from braincode.data.captions import read_captions
from braincode.data.checks import check_samples
from braincode.data.core import HEMISPHERES, Dataset, Responses, Split, Stimuli
from braincode.data.subjects import subject_dir
from braincode.errors import BraincodeError
from braincode.progress import progress

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
