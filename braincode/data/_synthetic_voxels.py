"""Voxels of the synthetic subject: where they sit on fsaverage, their ROIs, and their noiseless responses."""

from __future__ import annotations

import numpy as np
import pandas as pd

from braincode.atlases import N_VERTICES
from braincode.data._synthetic_images import CATEGORIES, _Object

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


def _roi_masks(voxels: pd.DataFrame) -> dict[str, np.ndarray]:
    """Challenge-space label arrays and all-vertices masks, keyed by file name."""
    files: dict[str, np.ndarray] = {}
    for hemi, table in voxels.groupby("hemisphere", sort=True):
        mask = np.zeros(N_VERTICES["fsaverage"], dtype=bool)
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
