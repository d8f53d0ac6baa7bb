"""A synthetic subject with known ground truth, written in the Algonauts 2023 layout.

Images are smooth random textures with 0-3 drawn objects (faces, stick-figure bodies, houses, written words) at
random places and sizes; captions describe them. Voxels sit on a patch of occipital cortex (fsaverage5 vertices,
which are also valid fsaverage indices) and come in three kinds:

- ``"prf"`` (prf-visualrois V1v..hV4): compressive response to the contrast energy inside a Gaussian population
  receptive field. Left-hemisphere pRFs lie in the right half of the image, ventral ROIs (``...v``) in the upper
  half and dorsal ROIs (``...d``) in the lower half, as in the brain;
- ``"category"`` (floc-faces OFA/FFA-1, floc-bodies EBA, floc-places OPA/PPA, floc-words VWFA-1): response to the
  presence of their category anywhere in the image, growing with its size;
- ``"none"``: no signal at all.

Clean responses are z-scored per voxel (over train and test); measured responses add Gaussian noise whose
standard deviation is ``noise`` times a per-voxel factor in [0.8, 1.25], so the noise ceiling (the r^2 a perfect
model reaches) is about ``1 / (1 + noise**2)`` for responsive voxels and 0 for the others.

The truth lies in ``<root>/truth/subjNN/``: ``train_clean.npy``, ``test_clean.npy``, ``test_fmri.npy`` (columns
ordered as the loaded dataset: lh then rh, each by vertex), ``voxels.csv`` (hemisphere, vertex, kind, category,
roi, prf_x, prf_y, prf_sigma, noise_sd, noise_ceiling; pRF position and size are fractions of the image width,
origin top-left, y downwards), ``objects.csv`` (one row per drawn object: image, split, category, x, y, size,
text) and ``params.json`` (the arguments it was made with).
"""
from __future__ import annotations

import json
import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from braincode.data._npy import read_array
from braincode.data._synthetic_images import CATEGORIES, _contrast_energy, _render, caption
from braincode.data._synthetic_voxels import MAPPINGS, _clean_responses, _layout, _roi_masks
from braincode.data.subjects import subject_dir, subject_id
from braincode.errors import ConfigError, DataFormatError, MissingFileError

__all__ = ["CATEGORIES", "SyntheticTruth", "caption", "load_truth", "make_synthetic"]

logger = logging.getLogger(__name__)

#: Columns of the truth's ``voxels.csv``.
TRUTH_COLUMNS = ("hemisphere", "vertex", "kind", "category", "roi", "prf_x", "prf_y", "prf_sigma", "noise_sd",
                 "noise_ceiling")  # fmt: skip
_VERSION = 1  # bump when the generator's output changes, so older folders are not reused
_PARAMS = "params.json"


@dataclass
class _Generated:
    """Everything a synthetic subject is made of, in memory (rows: train images, then test images)."""

    names: list[str]
    images: list[Image.Image]
    captions: list[str]
    objects: pd.DataFrame
    voxels: pd.DataFrame
    clean: np.ndarray
    measured: np.ndarray


def _generate(n_train: int, n_test: int, image_size: int, noise: float, seed: int) -> _Generated:
    image_seed, voxel_seed, noise_seed = np.random.SeedSequence(seed).spawn(3)
    image_rng = np.random.default_rng(image_seed)
    names, images, captions, objects, rows = [], [], [], [], []
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(1, count + 1):
            img, objs, background = _render(image_rng, image_size)
            name = f"{split}-{i:04d}_nsd-{len(names) + 1:05d}.png"
            names.append(name)
            images.append(img)
            captions.append(caption(objs, background))
            objects.append(objs)
            rows += [{"image": name, "split": split, **vars(o)} for o in objs]
    voxels = _layout(np.random.default_rng(voxel_seed))
    voxels["noise_sd"] *= noise
    voxels["noise_ceiling"] = np.where(voxels["kind"] == "none", 0.0, 1.0 / (1.0 + voxels["noise_sd"] ** 2))
    energy = _contrast_energy(np.stack([np.asarray(img) for img in images]), grid=max(8, image_size // 2))
    clean = _clean_responses(voxels, energy, objects).astype(np.float32)
    noise_draw = (
        np.random.default_rng(noise_seed).standard_normal(clean.shape) * voxels["noise_sd"].to_numpy()
    )
    table = pd.DataFrame(rows, columns=["image", "split", "category", "x", "y", "size", "text"])
    return _Generated(names, images, captions, table, voxels, clean, (clean + noise_draw).astype(np.float32))


def _write_subject(folder: Path, gen: _Generated, n_train: int) -> None:
    for split, sub in (
        ("train", ("training_split", "training_images")),
        ("test", ("test_split", "test_images")),
    ):
        folder.joinpath(*sub).mkdir(parents=True)
        for img, name in zip(gen.images, gen.names):
            if name.startswith(split):
                img.save(folder.joinpath(*sub, name), format="PNG")
    fmri_dir = folder / "training_split" / "training_fmri"
    fmri_dir.mkdir()
    hemi = gen.voxels["hemisphere"].to_numpy()
    for h in ("lh", "rh"):
        np.save(fmri_dir / f"{h}_training_fmri.npy", gen.measured[:n_train, hemi == h])
    roi_dir = folder / "roi_masks"
    roi_dir.mkdir()
    for name, array in _roi_masks(gen.voxels).items():
        np.save(roi_dir / name, array)
    for family, labels in MAPPINGS.items():
        np.save(roi_dir / f"mapping_{family}.npy", dict(enumerate(labels)), allow_pickle=True)
    pd.DataFrame({"image": gen.names, "caption": gen.captions}).to_csv(folder / "captions.csv", index=False)


def _write_truth(folder: Path, gen: _Generated, n_train: int, params: dict) -> None:
    folder.mkdir()
    np.save(folder / "train_clean.npy", gen.clean[:n_train])
    np.save(folder / "test_clean.npy", gen.clean[n_train:])
    np.save(folder / "test_fmri.npy", gen.measured[n_train:])
    gen.voxels[list(TRUTH_COLUMNS)].to_csv(folder / "voxels.csv", index=False, float_format="%.6g")
    gen.objects.to_csv(folder / "objects.csv", index=False)
    (folder / _PARAMS).write_text(json.dumps(params, indent=1) + "\n")


def _generated_with(truth: Path) -> dict | None:
    """The parameters recorded by :func:`make_synthetic` in a truth folder, if readable."""
    try:
        return json.loads((truth / _PARAMS).read_text())
    except (OSError, ValueError):
        return None


def make_synthetic(
    root: str | Path,
    subject: str | int = "subj01",
    n_train: int = 600,
    n_test: int = 100,
    image_size: int = 96,
    noise: float = 1.0,
    seed: int = 0,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic subject with known ground truth in the Algonauts 2023 layout.

    Parameters
    ----------
    root : str or Path
        Folder to write into (created if needed). The subject goes to ``<root>/subjNN/`` and its ground truth to
        ``<root>/truth/subjNN/``.
    subject : str or int, default "subj01"
        Subject id (``"subj01"``, ``"1"`` or ``1``).
    n_train, n_test : int, default 600 and 100
        Number of training and test images.
    image_size : int, default 96
        Width and height of the square PNG images (at least 32).
    noise : float, default 1.0
        Noise standard deviation relative to the (unit) signal standard deviation; the noise ceiling of a
        responsive voxel is about ``1 / (1 + noise**2)``.
    seed : int, default 0
        Everything (images, voxel parameters, noise) follows from it: same seed, same bytes.
    overwrite : bool, default False
        Replace this subject's folders if they exist. Without it, a subject made earlier with the same
        parameters is reused as it is (nothing is written), and any other existing folder is an error.

    Returns
    -------
    Path
        ``root``, ready for ``load_algonauts(root, subject)`` and ``load_truth(root, subject)``.

    Raises
    ------
    ConfigError
        For out-of-range parameters, or when a subject made otherwise exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> from braincode.data.algonauts import load_algonauts
    >>> root = make_synthetic(tempfile.mkdtemp(), n_train=20, n_test=5, seed=1)
    >>> ds = load_algonauts(root, "subj01")
    >>> ds["train"].responses.shape
    (20, 520)
    >>> load_truth(root, "subj01").test_fmri.shape
    (5, 520)
    """
    for name, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1), ("image_size", image_size, 32)):
        if int(value) != value or value < low:
            raise ConfigError(
                f"{name} is out of range",
                expected=f"an integer >= {low}",
                found=repr(value),
                fix=f"pass {name}={max(low, 1)} or more",
            )
    if not np.isfinite(noise) or noise < 0:
        raise ConfigError(
            "noise is out of range",
            expected="a finite number >= 0",
            found=repr(noise),
            fix="pass e.g. noise=1.0",
        )
    root, subj = Path(root), subject_id(subject)
    targets = (root / subj, root / "truth" / subj)
    params = {"version": _VERSION, "subject": subj, "n_train": int(n_train), "n_test": int(n_test),
              "image_size": int(image_size), "noise": float(noise), "seed": int(seed)}  # fmt: skip
    if _generated_with(targets[1]) == params and targets[0].is_dir() and not overwrite:
        logger.info("reusing synthetic %s in %s (same parameters)", subj, root)
        return root
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise ConfigError(
            "a different dataset already exists for this subject",
            expected=f"a free folder, or one made by make_synthetic with {params}",
            found=f"{[str(t) for t in existing]} (made with {_generated_with(targets[1]) or 'unknown parameters'})",
            fix="pass overwrite=True or another root",
        )

    gen = _generate(int(n_train), int(n_test), int(image_size), float(noise), seed)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".synthetic-{subj}-{secrets.token_hex(4)}"
    try:
        _write_subject(staging / "subject", gen, n_train)
        _write_truth(staging / "truth", gen, n_train, params)
        targets[1].parent.mkdir(exist_ok=True)
        for built, target in zip((staging / "subject", staging / "truth"), targets):
            if target.exists():
                shutil.rmtree(target)
            built.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "wrote synthetic %s (%d train, %d test images, %d voxels) to %s",
        subj,
        n_train,
        n_test,
        len(gen.voxels),
        root,
    )
    return root


@dataclass(frozen=True)
class SyntheticTruth:
    """Ground truth of a synthetic subject (columns ordered as the loaded dataset: lh then rh, by vertex).

    Attributes
    ----------
    train_clean, test_clean : ndarray of shape (n_train | n_test, n_voxels)
        Noiseless responses (the measured training fMRI is ``train_clean`` plus noise).
    test_fmri : ndarray of shape (n_test, n_voxels)
        Noisy test responses, withheld from the challenge layout.
    voxels : DataFrame
        hemisphere, vertex, kind ("prf", "category", "none"), category, roi, prf_x, prf_y, prf_sigma,
        noise_sd, noise_ceiling.
    objects : DataFrame
        One row per drawn object: image, split, category, x, y, size, text.
    """

    train_clean: np.ndarray
    test_clean: np.ndarray
    test_fmri: np.ndarray
    voxels: pd.DataFrame
    objects: pd.DataFrame


def load_truth(root: str | Path, subject: str | int = "subj01") -> SyntheticTruth:
    """Read the ground truth that :func:`make_synthetic` wrote for ``subject``.

    Examples
    --------
    >>> import tempfile
    >>> root = make_synthetic(tempfile.mkdtemp(), n_train=20, n_test=5)
    >>> truth = load_truth(root, 1)
    >>> sorted(truth.voxels["kind"].unique())
    ['category', 'none', 'prf']
    """
    subject_dir(root, subject)
    folder = Path(root) / "truth" / subject_id(subject)
    fix = f"regenerate it with make_synthetic({str(root)!r}, {subject_id(subject)!r}, overwrite=True)"
    arrays = {
        name: read_array(folder / f"{name}.npy", what=f"synthetic {name}", fix=fix)
        for name in ("train_clean", "test_clean", "test_fmri")
    }
    tables = {}
    for name in ("voxels", "objects"):
        path = folder / f"{name}.csv"
        if not path.is_file():
            raise MissingFileError(
                f"the synthetic {name} table is missing", path=path, found="nothing", fix=fix
            )
        tables[name] = pd.read_csv(
            path, keep_default_na=False, na_values={"prf_x": [""], "prf_y": [""], "prf_sigma": [""]}
        )
    if len(tables["voxels"]) != arrays["train_clean"].shape[1]:
        raise DataFormatError(
            "synthetic truth files disagree",
            path=folder / "voxels.csv",
            expected=f"{arrays['train_clean'].shape[1]} voxel rows",
            found=str(len(tables["voxels"])),
            fix=fix,
        )
    return SyntheticTruth(**arrays, **tables)

