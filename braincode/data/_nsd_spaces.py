"""Readers of NSD's two kinds of spaces: volumes (``func1pt8mm``, ``func1mm``) and the fsaverage surface.

A reader knows its voxel table (inside a mask), reads one session's betas into a float32 (trials, n_voxels)
block (samples first; NIfTI and MGH store each trial's volume contiguously, so nothing is transposed), reads ROI columns and the ``ncsnr`` map, and lists the session files of a beta folder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braincode.atlases import label_names
from braincode.data._maps import listing, resolve_labels
from braincode.data.core import HEMISPHERES
from braincode.data.surface import _vertex_values, read_surface_data
from braincode.data.volume import check_grid, mask_voxels, read_image, sample_volume
from braincode.errors import DataFormatError, MissingFileError

logger = logging.getLogger(__name__)

#: NSD stores betas as int16 x 300 (percent signal change x 300).
NSD_INT16_SCALE = 300.0


def scaled_into(raw: np.ndarray, dtype: np.dtype, scale: float | str, out: np.ndarray) -> None:
    """``out[...] = raw / divisor`` in float32; ``scale="auto"`` divides integers by 300 and floats by 1."""
    by = (NSD_INT16_SCALE if np.issubdtype(dtype, np.integer) else 1.0) if scale == "auto" else float(scale)
    np.copyto(out, raw, casting="unsafe")  # one cast (10x faster than dividing big-endian int16 directly)
    out /= np.float32(by)


def _check_trials(number: int, path: Path, found: int, expected: int) -> None:
    if found != expected:
        raise DataFormatError(
            f"session {number} has a different number of trials",
            path=path,
            expected=f"{expected} (as the first session loaded)",
            found=f"{found}",
        )


class VolumeReader:
    """Reads NSD volume data (func1pt8mm / func1mm) inside a mask."""

    def __init__(self, beta_dir: Path, roi_dir: Path, mask: str | Path | None):
        self.beta_dir, self.roi_dir = beta_dir, roi_dir
        first = session_files(beta_dir, "volume")[0][1][0]
        grid = read_image(first, what="betas")
        if mask is None:
            mask_img = nib.Nifti1Image(np.ones(grid.shape[:3], np.uint8), grid.affine)
        else:
            mask_img = read_image(self._roi_path(mask), what="mask")
        self.grid = mask_img  # the file named in grid-mismatch messages
        self.mask_img, self.voxels = mask_voxels(mask_img)
        ijk = tuple(self.voxels[c].to_numpy() for c in "ijk")
        self.columns = np.ravel_multi_index(ijk, self.mask_img.shape, order="F")  # voxels in a trial's volume

    def _roi_path(self, name: str | Path) -> Path:
        return Path(name) if Path(name).suffix else self.roi_dir / f"{name}.nii.gz"

    def rois(self, families: Sequence[str], ctab_dir: Path) -> dict[str, np.ndarray]:
        columns = {}
        for family in families:
            path = self._roi_path(family)
            if not path.is_file():
                logger.info("no %s ROI volume at %s; column skipped", family, path)
                continue
            values = sample_volume(path, self.voxels, self.grid, f"{family} ROI volume")
            columns[family] = label_names(values, _labels(family, ctab_dir), source=path).astype(str)
        return columns

    @property
    def n_voxels(self) -> int:
        return len(self.voxels)

    def read_into(self, number: int, files: Sequence[Path], out: np.ndarray, scale: float | str) -> None:
        """Session ``number``'s betas inside the mask, divided by the scale, into ``out`` (trials, n_voxels)."""
        img = read_image(files[0], what="betas")
        if img.ndim != 4:
            raise DataFormatError(
                "NSD volume betas must be 4-D",
                path=files[0],
                expected="(X, Y, Z, trials)",
                found=f"shape {img.shape}",
            )
        check_grid(img, self.grid, "betas")
        _check_trials(number, files[0], img.shape[3], out.shape[0])
        trials = np.asarray(img.dataobj).reshape(-1, img.shape[3], order="F").T  # (trials, grid voxels)
        scaled_into(trials[:, self.columns], img.get_data_dtype(), scale, out)

    def ncsnr(self) -> np.ndarray:
        return sample_volume(self.beta_dir / "ncsnr.nii.gz", self.voxels, self.grid, "ncsnr volume")

    def meta(self) -> dict:
        return {"affine": self.mask_img.affine.copy(), "shape": tuple(int(s) for s in self.mask_img.shape)}


class SurfaceReader:
    """Reads NSD fsaverage data (``{lh,rh}.*.mgh``) inside a per-hemisphere mask."""

    def __init__(self, beta_dir: Path, roi_dir: Path, mask: str | Path | None):
        self.beta_dir, self.roi_dir = beta_dir, roi_dir
        first = session_files(beta_dir, "surface")[0][1]
        self.n_vertices = {h: int(nib.load(f).shape[0]) for h, f in zip(HEMISPHERES, first)}  # header only
        self.keep = {
            h: np.ones(n, bool)
            if mask is None
            else _vertex_values(self._roi_path(mask, h), n, f"{h} mask") > 0
            for h, n in self.n_vertices.items()
        }
        self.voxels = pd.DataFrame(
            {
                "hemisphere": np.concatenate([np.full(k.sum(), h) for h, k in self.keep.items()]),
                "vertex": np.concatenate([np.flatnonzero(k) for k in self.keep.values()]),
            }
        )

    def _roi_path(self, name: str | Path, hemi: str) -> Path:
        return Path(str(name).format(hemi=hemi)) if Path(name).suffix else self.roi_dir / f"{hemi}.{name}.mgz"

    def _per_vertex(self, paths: dict[str, Path], what: str) -> np.ndarray:
        return np.concatenate(
            [_vertex_values(paths[h], self.n_vertices[h], f"{h} {what}")[self.keep[h]] for h in HEMISPHERES]
        )

    def rois(self, families: Sequence[str], ctab_dir: Path) -> dict[str, np.ndarray]:
        columns = {}
        for family in families:
            paths = {h: self._roi_path(family, h) for h in HEMISPHERES}
            if not all(p.is_file() for p in paths.values()):
                logger.info("no %s ROI maps at %s; column skipped", family, paths["lh"])
                continue
            values = self._per_vertex(paths, f"{family} ROI map")
            columns[family] = label_names(values, _labels(family, ctab_dir), source=paths["lh"]).astype(str)
        return columns

    @property
    def n_voxels(self) -> int:
        return len(self.voxels)

    def read_into(self, number: int, files: Sequence[Path], out: np.ndarray, scale: float | str) -> None:
        """Session ``number``'s betas of the kept vertices (lh, then rh), divided by the scale, into ``out``."""
        start = 0
        for hemi, path in zip(HEMISPHERES, files):
            data, dtype = read_surface_data(path)
            if data.shape[0] != self.n_vertices[hemi]:
                raise DataFormatError(
                    f"{hemi} betas have a different vertex count",
                    path=path,
                    expected=f"{self.n_vertices[hemi]}",
                    found=f"{data.shape[0]}",
                )
            _check_trials(number, path, data.shape[1], out.shape[0])
            keep = self.keep[hemi]
            n = int(keep.sum())
            trials = data.T  # (trials, vertices): contiguous for MGH, whose trials are stored one after another
            scaled_into(trials if n == keep.size else trials[:, keep], dtype, scale, out[:, start : start + n])
            start += n

    def ncsnr(self) -> np.ndarray:
        return self._per_vertex({h: self.beta_dir / f"{h}.ncsnr.mgh" for h in HEMISPHERES}, "ncsnr map")

    def meta(self) -> dict:
        return {"n_vertices": dict(self.n_vertices)}


def _labels(family: str, ctab_dir: Path) -> dict[int, str]:
    ctab = ctab_dir / f"{family}.mgz.ctab"
    return resolve_labels(family, ctab if ctab.is_file() else None, ctab)


_SESSION = re.compile(r"(?:(lh|rh)\.)?betas_session(\d+)\.(nii\.gz|nii|mgh|mgz)$")


def session_files(beta_dir: Path, kind: str) -> list[tuple[int, list[Path]]]:
    """(session number, files) per session: one NIfTI for volumes, ``[lh, rh]`` for surfaces."""
    sessions: dict[int, dict[str, Path]] = {}
    for path in beta_dir.glob("*betas_session*"):
        match = _SESSION.fullmatch(path.name)
        if match and (match.group(1) is None) == (kind == "volume"):
            sessions.setdefault(int(match.group(2)), {})[match.group(1) or "volume"] = path
    if not sessions:
        pattern = "betas_sessionNN.nii.gz" if kind == "volume" else "{lh,rh}.betas_sessionNN.mgh"
        raise MissingFileError(
            "no NSD beta files",
            path=beta_dir,
            expected=pattern,
            found=listing(beta_dir),
            fix="download the betas of this subject, space and beta version",
        )
    out = []
    for number, files in sorted(sessions.items()):
        if kind == "volume":
            out.append((number, [files["volume"]]))
            continue
        absent = [h for h in HEMISPHERES if h not in files]
        if absent:
            raise MissingFileError(
                f"session {number} lacks its {absent[0]} betas",
                path=beta_dir,
                expected=f"{absent[0]}.betas_session{number:02d}.mgh",
                found=listing(beta_dir),
            )
        out.append((number, [files[h] for h in HEMISPHERES]))
    return out


def header_trials(files: Sequence[Path]) -> int:
    """Trials per session, from the first beta file's header (last axis: NIfTI (X, Y, Z, T), MGH (V, 1, 1, T))."""
    shape = nib.load(files[0]).shape
    if len(shape) != 4:
        raise DataFormatError(
            "NSD beta files must be 4-D",
            path=files[0],
            expected="(X, Y, Z, trials) or MGH (vertices, 1, 1, trials)",
            found=f"shape {shape}",
        )
    return int(shape[3])


def select_sessions(found, sessions: Sequence[int], beta_dir: Path):
    available = dict(found)
    wanted = sorted({int(s) for s in sessions})
    absent = sorted(set(wanted) - set(available))
    if absent:
        raise MissingFileError(
            f"sessions {absent} not found",
            path=beta_dir,
            expected=f"sessions among {sorted(available)}",
            found=listing(beta_dir),
        )
    return [(s, available[s]) for s in wanted]
