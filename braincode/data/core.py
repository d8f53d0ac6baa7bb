"""Core data objects: :class:`Stimuli`, :class:`Responses`, :class:`Split` and :class:`Dataset`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from braincode.data.rois import roi_families
from braincode.errors import DataFormatError

#: Columns every voxel table has; ROI families are ``roi:<family>`` string columns (see :mod:`braincode.data.rois`).
VOXEL_COLUMNS = ("hemisphere", "vertex")
#: Values of the ``hemisphere`` column on surfaces (volume voxels have ``""``), in the order responses keep them.
HEMISPHERES = ("lh", "rh")


@dataclass(frozen=True)
class Stimuli:
    """Ordered stimuli with lazy image access and optional captions.

    Parameters
    ----------
    ids : sequence of str
        One id per stimulus, e.g. ``"train-0001_nsd-00013"``.
    paths : sequence of Path, optional
        Image files, one per id. Images are opened only when asked for.
    captions : sequence of str, optional
        One caption per stimulus (used for text features and caption metrics).

    Examples
    --------
    >>> s = Stimuli(ids=["a", "b"], captions=["a cat", "a dog"])
    >>> len(s), s.captions[1]
    (2, 'a dog')
    """

    ids: tuple[str, ...]
    paths: tuple[Path, ...] | None = None
    captions: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        for name in ("paths", "captions"):
            value = getattr(self, name)
            if value is None:
                continue
            value = tuple(Path(v) for v in value) if name == "paths" else tuple(str(v) for v in value)
            if len(value) != len(self.ids):
                raise DataFormatError(
                    f"Stimuli got {len(value)} {name} for {len(self.ids)} ids",
                    expected=f"one entry of {name} per id",
                    found=f"{len(value)}",
                    fix=f"pass exactly one {name[:-1]} per stimulus",
                )
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> Stimuli:
        """Return the stimuli at ``index`` (positions), in that order."""
        idx = [int(i) for i in np.asarray(index).ravel()]
        return Stimuli(
            ids=[self.ids[i] for i in idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            captions=None if self.captions is None else [self.captions[i] for i in idx],
        )

    @property
    def has_images(self) -> bool:
        """Whether :meth:`image` can open these stimuli (image files here; subclasses may read elsewhere)."""
        return self.paths is not None

    def image(self, i: int) -> Image.Image:
        """Open stimulus ``i`` as an RGB PIL image, with a clear error if the file is not an image."""
        if self.paths is None:
            raise DataFormatError("these stimuli have no image files", fix="build Stimuli with paths=...")
        path = self.paths[i]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise DataFormatError(
                "cannot read the stimulus image",
                path=path,
                expected="a readable PNG/JPEG image",
                found=f"{type(exc).__name__}: {exc}",
                fix="replace the file with a valid image (re-export or re-download it)",
            ) from exc

    @cached_property
    def content_hashes(self) -> tuple[str, ...]:
        """SHA-256 of each stimulus' content (image bytes, or caption text when there are no images)."""
        if self.paths is not None:
            return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in self.paths)
        if self.captions is not None:
            return tuple(hashlib.sha256(c.encode()).hexdigest() for c in self.captions)
        raise DataFormatError("stimuli have neither image paths nor captions to hash")


@dataclass(frozen=True)
class Responses:
    """Measured responses: a float32 array (n_stimuli, n_voxels) and its voxel table.

    Parameters
    ----------
    data : ndarray of shape (n_stimuli, n_voxels)
        Stored as float32.
    voxels : DataFrame
        One row per voxel with at least ``hemisphere`` and ``vertex``; one string column ``roi:<family>`` per ROI
        family (empty string = outside every ROI of that family, see :mod:`braincode.data.rois`); optionally
        ``noise_ceiling``.
    """

    data: np.ndarray
    voxels: pd.DataFrame

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 2:
            raise DataFormatError(
                "responses must be 2-D", expected="(n_stimuli, n_voxels)", found=str(data.shape)
            )
        if len(self.voxels) != data.shape[1]:
            raise DataFormatError(
                "voxel table and responses disagree",
                expected=f"{data.shape[1]} voxel rows",
                found=f"{len(self.voxels)}",
            )
        missing = [c for c in VOXEL_COLUMNS if c not in self.voxels.columns]
        if missing:
            raise DataFormatError(
                "voxel table lacks columns", expected=str(VOXEL_COLUMNS), found=str(missing)
            )
        object.__setattr__(self, "data", data.astype(np.float32, copy=False))

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    @property
    def roi_families(self) -> list[str]:
        """Names of the ROI families of the voxel table (its ``roi:<family>`` columns)."""
        return roi_families(self.voxels)

    def subset(self, index: Sequence[int] | np.ndarray) -> Responses:
        """Return the rows (stimuli) at ``index``."""
        return Responses(self.data[np.asarray(index)], self.voxels)


@dataclass(frozen=True)
class Split:
    """One named split: its stimuli and, when measured, their responses."""

    stimuli: Stimuli
    responses: Responses | None = None

    def __post_init__(self) -> None:
        if self.responses is not None and self.responses.shape[0] != len(self.stimuli):
            raise DataFormatError(
                "the number of stimuli and of response rows differ",
                expected=f"{len(self.stimuli)} response rows (one per stimulus)",
                found=f"{self.responses.shape[0]}",
                fix="check that the image folder and the fMRI file belong to the same subject and split",
            )


@dataclass
class Dataset:
    """Stimuli and responses of one subject, in named splits, in one space.

    Parameters
    ----------
    splits : dict of str to Split
        Usually ``"train"`` (with responses) and ``"test"`` (responses possibly withheld).
    voxels : DataFrame
        The voxel table shared by every split.
    subject : str
        Subject id, e.g. ``"subj01"``.
    space : str
        Space of the voxels, e.g. ``"fsaverage"`` or ``"func1pt8mm"``.
    """

    splits: dict[str, Split]
    voxels: pd.DataFrame
    subject: str
    space: str
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"no split {name!r}; this dataset has {sorted(self.splits)}")
        return self.splits[name]

    @property
    def roi_families(self) -> list[str]:
        """Names of the ROI families of the voxel table (its ``roi:<family>`` columns)."""
        return roi_families(self.voxels)
