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
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from braincode.data._npy import read_array
from braincode.data.algonauts import N_FSAVERAGE, subject_dir, subject_id
from braincode.errors import ConfigError, DataFormatError, MissingFileError

logger = logging.getLogger(__name__)

CATEGORIES = ("face", "body", "place", "word")
#: Columns of the truth's ``voxels.csv``.
TRUTH_COLUMNS = ("hemisphere", "vertex", "kind", "category", "roi", "prf_x", "prf_y", "prf_sigma", "noise_sd",
                 "noise_ceiling")  # fmt: skip

#: The challenge's label -> name mappings (label 0 = outside every ROI).
MAPPINGS = {
    "prf-visualrois": ["Unknown", "V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"],
    "floc-bodies": ["Unknown", "EBA", "FBA-1", "FBA-2", "mTL-bodies"],
    "floc-faces": ["Unknown", "OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"],
    "floc-places": ["Unknown", "OPA", "PPA", "RSC"],
    "floc-words": ["Unknown", "OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"],
    "streams": [
        "Unknown",
        "early",
        "midventral",
        "midlateral",
        "midparietal",
        "ventral",
        "lateral",
        "parietal",
    ],
}

# pRF ROIs nearest the occipital pole first: (roi, voxels per hemisphere, pRF sigma range, vertical half).
_PRF_ROIS = (
    ("V1v", 20, (0.04, 0.07), "upper"), ("V1d", 20, (0.04, 0.07), "lower"),
    ("V2v", 18, (0.06, 0.10), "upper"), ("V2d", 18, (0.06, 0.10), "lower"),
    ("V3v", 16, (0.08, 0.13), "upper"), ("V3d", 16, (0.08, 0.13), "lower"),
    ("hV4", 16, (0.12, 0.20), "both"),
)  # fmt: skip
# Ring around the early patch, ventro-medial to dorsal: (roi or None, family, category, voxels per hemisphere).
_RING = (
    ("PPA", "floc-places", "place", 16), ("FFA-1", "floc-faces", "face", 16),
    ("VWFA-1", "floc-words", "word", 12), ("OFA", "floc-faces", "face", 10),
    ("EBA", "floc-bodies", "body", 16), ("OPA", "floc-places", "place", 10),
    (None, None, "", 56),
)  # fmt: skip
_STREAMS = {
    "V1": "early",
    "V2": "early",
    "V3": "early",
    "hV4": "midventral",
    "FFA-1": "ventral",
    "PPA": "ventral",
    "VWFA-1": "ventral",
    "OFA": "lateral",
    "EBA": "lateral",
    "OPA": "lateral",
    "": "parietal",
}
# Category voxels respond to their category (1.0) and a little to one other (cross-talk).
_CROSSTALK = {"face": {"body": 0.15}, "body": {"face": 0.15}, "place": {}, "word": {}}
_BACKGROUNDS = {
    "reddish": (0.66, 0.46, 0.42), "greenish": (0.46, 0.62, 0.46), "bluish": (0.44, 0.52, 0.70),
    "yellowish": (0.68, 0.64, 0.42), "grey": (0.56, 0.56, 0.56),
}  # fmt: skip
_NOUNS = {"face": "face", "body": "person", "place": "house"}
_SCALE = 2  # draw at twice the size, then downsample (anti-aliasing)
_VERSION = 1  # bump when the generator's output changes, so older folders are not reused
_PARAMS = "params.json"


# ----------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class _Object:
    category: str
    x: float  # centre, fraction of the image width (left = 0)
    y: float  # centre, fraction of the image height (top = 0)
    size: float  # extent, fraction of the image width
    text: str = ""


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _texture(rng: np.random.Generator, size: int, base: tuple[float, float, float]) -> Image.Image:
    """Smooth texture of the base colour: a few random values per axis (mostly luminance), upsampled bicubically."""
    n = int(rng.integers(3, 7))
    lum, tint = 0.15 * rng.standard_normal((n, n, 1)), 0.05 * rng.standard_normal((n, n, 3))
    coarse = np.clip(np.asarray(base) + lum + tint, 0, 1)
    return Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)


def _draw_object(draw: ImageDraw.ImageDraw, obj: _Object, rng: np.random.Generator, px: int) -> None:
    """Draw one object on a ``px``-wide canvas."""
    s, cx, cy = obj.size * px, obj.x * px, obj.y * px
    dark = tuple(int(v) for v in rng.integers(0, 60, 3))
    lw = max(2, round(0.05 * s))
    if obj.category == "face":
        skin = tuple(int(v) for v in (rng.uniform(0.75, 1.0) * np.array([240, 200, 170])))
        draw.ellipse(
            (cx - 0.4 * s, cy - 0.5 * s, cx + 0.4 * s, cy + 0.5 * s), fill=skin, outline=dark, width=lw
        )
        for side in (-1, 1):
            ex, ey, r = cx + side * 0.17 * s, cy - 0.12 * s, 0.07 * s
            draw.ellipse((ex - r, ey - r * 0.7, ex + r, ey + r * 0.7), fill=dark)
        draw.arc((cx - 0.18 * s, cy + 0.05 * s, cx + 0.18 * s, cy + 0.3 * s), 20, 160, fill=dark, width=lw)
    elif obj.category == "body":
        r = 0.11 * s
        draw.ellipse((cx - r, cy - 0.5 * s, cx + r, cy - 0.5 * s + 2 * r), outline=dark, width=lw)
        neck, hip = cy - 0.5 * s + 2 * r, cy + 0.08 * s
        draw.line((cx, neck, cx, hip), fill=dark, width=lw)
        for side in (-1, 1):
            draw.line((cx, neck + 0.08 * s, cx + side * 0.3 * s, cy - 0.02 * s), fill=dark, width=lw)
            draw.line((cx, hip, cx + side * 0.22 * s, cy + 0.5 * s), fill=dark, width=lw)
    elif obj.category == "place":
        wall = tuple(int(v) for v in rng.integers(170, 250, 3))
        roof = tuple(int(v) for v in (rng.integers(120, 200), rng.integers(20, 70), rng.integers(20, 60)))
        draw.rectangle(
            (cx - 0.4 * s, cy - 0.05 * s, cx + 0.4 * s, cy + 0.45 * s), fill=wall, outline=dark, width=lw
        )
        draw.polygon(
            [(cx - 0.5 * s, cy - 0.05 * s), (cx + 0.5 * s, cy - 0.05 * s), (cx, cy - 0.45 * s)], fill=roof
        )
        draw.rectangle((cx - 0.08 * s, cy + 0.2 * s, cx + 0.08 * s, cy + 0.45 * s), fill=dark)
        draw.rectangle((cx + 0.16 * s, cy + 0.05 * s, cx + 0.32 * s, cy + 0.18 * s), fill=(120, 170, 220))
    else:  # word
        left, _, right, _ = draw.textbbox((0, 0), obj.text, font=_font(100))
        font = _font(max(8, round(100 * s / max(right - left, 1))))  # text as wide as the object's extent
        left, top, right, bottom = draw.textbbox((0, 0), obj.text, font=font)
        draw.text((cx - (left + right) / 2, cy - (top + bottom) / 2), obj.text, fill=dark, font=font)


def _render(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[_Object], str]:
    """One stimulus: texture, 0-3 objects, and the background's colour name."""
    background = list(_BACKGROUNDS)[int(rng.integers(len(_BACKGROUNDS)))]
    canvas = _texture(rng, size * _SCALE, _BACKGROUNDS[background])
    draw = ImageDraw.Draw(canvas)
    objects = []
    for _ in range(int(rng.integers(0, 4))):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        extent = float(rng.uniform(0.25, 0.5))
        x, y = (float(v) for v in rng.uniform(extent / 2, 1 - extent / 2, 2))
        text = (
            "".join(rng.choice(list(string.ascii_uppercase), int(rng.integers(3, 6))))
            if category == "word"
            else ""
        )
        obj = _Object(category, round(x, 4), round(y, 4), round(extent, 4), text)
        _draw_object(draw, obj, rng, size * _SCALE)
        objects.append(obj)
    return canvas.resize((size, size), Image.Resampling.LANCZOS), objects, background


def _where(obj: _Object) -> str:
    col = "left" if obj.x < 1 / 3 else "right" if obj.x > 2 / 3 else ""
    row = "top" if obj.y < 1 / 3 else "bottom" if obj.y > 2 / 3 else ""
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    return f"on the {col}" if col else "in the centre"


def caption(objects: list[_Object], background: str) -> str:
    """Describe a synthetic image, e.g. ``'a large face on the left and a house at the top, on a bluish background'``.

    Examples
    --------
    >>> caption([], "grey")
    'a smooth grey texture with nothing on it'
    """
    if not objects:
        return f"a smooth {background} texture with nothing on it"
    parts = []
    for obj in objects:
        adjective = "small " if obj.size < 0.33 else "large " if obj.size > 0.43 else ""
        noun = f'the word "{obj.text}"' if obj.category == "word" else f"a {adjective}{_NOUNS[obj.category]}"
        parts.append(f"{noun} {_where(obj)}")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed}, on a {background} background"


def _contrast_energy(images: np.ndarray, grid: int) -> np.ndarray:
    """Local contrast energy (squared band-pass luminance) of uint8 RGB images, pooled to a ``grid`` x ``grid`` map."""
    from scipy.ndimage import gaussian_filter  # scipy.ndimage is slow to import; only generation needs it

    gray = images.astype(np.float32).mean(-1) / 255.0
    size = gray.shape[1]
    band = gaussian_filter(gray, (0, 0.5, 0.5)) - gaussian_filter(gray, (0, size / 48, size / 48))
    energy = band**2
    f = size // grid
    return energy[:, : grid * f, : grid * f].reshape(len(images), grid, f, grid, f).mean((2, 4))


# ----------------------------------------------------------------------------------------------- voxels


def _block(hemi: str, vertices: np.ndarray, **columns: object) -> pd.DataFrame:
    return pd.DataFrame({"hemisphere": hemi, "vertex": vertices.astype(np.int64), **columns})


def _prf_block(rng: np.random.Generator, hemi: str, vertices: np.ndarray, roi: str, sigma: tuple, half: str):
    """pRF voxels of one ROI: centres in the contralateral half and the ROI's upper/lower half of the image."""
    xs = (0.52, 0.95) if hemi == "lh" else (0.05, 0.48)
    ys = {"upper": (0.05, 0.5), "lower": (0.5, 0.95), "both": (0.1, 0.9)}[half]
    n = vertices.size
    return _block(
        hemi,
        vertices,
        kind="prf",
        category="",
        roi=roi,
        family="prf-visualrois",
        prf_x=rng.uniform(*xs, n),
        prf_y=rng.uniform(*ys, n),
        prf_sigma=rng.uniform(*sigma, n),
    )


def _split(items: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(items, np.cumsum(sizes)[:-1])


def _layout(rng: np.random.Generator) -> pd.DataFrame:
    """Voxels on an occipital patch of each hemisphere: pRF ROIs around the pole, category ROIs in a ring."""
    from nilearn.datasets import load_fsaverage  # offline: nilearn ships fsaverage5

    mesh = load_fsaverage("fsaverage5")["inflated"]
    n_prf, n_ring = sum(r[1] for r in _PRF_ROIS), sum(r[3] for r in _RING)
    no_prf = {"prf_x": np.nan, "prf_y": np.nan, "prf_sigma": np.nan}
    areas = [
        [r for r in _PRF_ROIS if r[0].startswith(a)] for a in ("V1", "V2", "V3", "hV4")
    ]  # nearest pole first
    blocks = []
    for hemi, part, lateral_sign in (("lh", "left", -1.0), ("rh", "right", 1.0)):
        xyz = np.asarray(mesh.parts[part].coordinates, dtype=np.float64)
        pole = xyz[np.argmin(xyz[:, 1])]
        order = np.argsort(np.linalg.norm(xyz - pole, axis=1), kind="stable")[: n_prf + n_ring]
        early, ring = order[:n_prf], order[n_prf:]
        for rois, block in zip(areas, _split(early, [sum(r[1] for r in rois) for rois in areas])):
            # ventral vertices (low z) carry the upper visual field: the ...v ROIs come first
            block = block[np.argsort(xyz[block, 2], kind="stable")]
            for (roi, _, sigma, half), idx in zip(rois, _split(block, [r[1] for r in rois])):
                blocks.append(_prf_block(rng, hemi, idx, roi, sigma, half))
        d = xyz[ring] - pole
        angle = np.arctan2(d[:, 2], lateral_sign * d[:, 0])  # -pi: ventro-medial, 0: lateral, pi/2: dorsal
        ring = ring[np.argsort(angle, kind="stable")]
        for (roi, family, category, _), idx in zip(_RING, _split(ring, [r[3] for r in _RING])):
            kind = "category" if roi else "none"
            blocks.append(
                _block(hemi, idx, kind=kind, category=category, roi=roi or "", family=family or "", **no_prf)
            )
    table = pd.concat(blocks).sort_values(["hemisphere", "vertex"], kind="stable").reset_index(drop=True)
    table["noise_sd"] = rng.uniform(0.8, 1.25, len(table))
    return table


def _clean_responses(voxels: pd.DataFrame, energy: np.ndarray, objects: list[list[_Object]]) -> np.ndarray:
    """Noiseless responses (n_images, n_voxels), z-scored per voxel; zero for non-responsive voxels."""
    grid = energy.shape[1]
    centres = (np.arange(grid) + 0.5) / grid
    out = np.zeros((len(energy), len(voxels)))
    prf = np.flatnonzero(voxels["kind"].to_numpy() == "prf")
    px, py, ps = (voxels[c].to_numpy()[prf][:, None, None] for c in ("prf_x", "prf_y", "prf_sigma"))
    gauss = np.exp(-((centres[None, None, :] - px) ** 2 + (centres[None, :, None] - py) ** 2) / (2 * ps**2))
    gauss /= gauss.sum((1, 2), keepdims=True)
    out[:, prf] = np.sqrt(energy.reshape(len(energy), -1) @ gauss.reshape(len(prf), -1).T)
    drive = np.zeros((len(objects), len(CATEGORIES)))
    for i, objs in enumerate(objects):
        for obj in objs:
            drive[i, CATEGORIES.index(obj.category)] += 0.5 + obj.size
    for category in CATEGORIES:
        cols = np.flatnonzero(
            (voxels["kind"] == "category").to_numpy() & (voxels["category"] == category).to_numpy()
        )
        weights = np.zeros(len(CATEGORIES))
        weights[CATEGORIES.index(category)] = 1.0
        for other, w in _CROSSTALK[category].items():
            weights[CATEGORIES.index(other)] = w
        out[:, cols] = (drive @ weights)[:, None]
    sd = out.std(0)
    return np.where(sd > 0, (out - out.mean(0)) / np.where(sd > 0, sd, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------- writing


def _roi_masks(voxels: pd.DataFrame) -> dict[str, np.ndarray]:
    """Challenge-space label arrays and all-vertices masks, keyed by file name."""
    files: dict[str, np.ndarray] = {}
    for hemi, table in voxels.groupby("hemisphere", sort=True):
        mask = np.zeros(N_FSAVERAGE, dtype=bool)
        mask[table["vertex"].to_numpy()] = True
        files[f"{hemi}.all-vertices_fsaverage_space.npy"] = mask
        names = {family: np.where(table["family"] == family, table["roi"], "") for family in MAPPINGS}
        names["streams"] = table["roi"].str.replace(r"[vd]$", "", regex=True).map(_STREAMS).to_numpy()
        for family, per_vertex in names.items():
            lookup = {name: label for label, name in enumerate(MAPPINGS[family])}
            lookup[""] = 0
            files[f"{hemi}.{family}_challenge_space.npy"] = np.array(
                [lookup[n] for n in per_vertex], np.int32
            )
    return files


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
