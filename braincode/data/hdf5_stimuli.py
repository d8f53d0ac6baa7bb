"""Stimuli read lazily from an HDF5 image array, as NSD ships its 73,000 images (``nsd_stimuli.hdf5``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from braincode.data._maps import listing
from braincode.data.core import Stimuli
from braincode.errors import DataFormatError, MissingFileError


@dataclass(frozen=True)
class HDF5Stimuli(Stimuli):
    """Stimuli read lazily from rows of an HDF5 image array (NSD's ``nsd_stimuli.hdf5``, dataset ``imgBrick``).

    Parameters
    ----------
    ids : sequence of str
    hdf5 : Path
        The HDF5 file.
    rows : sequence of int
        Row of the image array for each id (the 0-based NSD id for ``nsd_stimuli.hdf5``).
    dataset : str
        Name of the (n, height, width, 3) uint8 array.

    Examples
    --------
    >>> import tempfile, pathlib, h5py, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "stim.hdf5"
    >>> with h5py.File(p, "w") as f:
    ...     _ = f.create_dataset("imgBrick", data=np.full((3, 4, 4, 3), 7, np.uint8))
    >>> s = HDF5Stimuli(ids=["nsd-00002"], hdf5=p, rows=[2])
    >>> s.image(0).size, len(s.subset([0, 0]))
    ((4, 4), 2)
    """

    hdf5: Path | None = None
    rows: tuple[int, ...] = field(default=())
    dataset: str = "imgBrick"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hdf5", Path(self.hdf5) if self.hdf5 is not None else None)
        object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))
        if self.hdf5 is None or len(self.rows) != len(self.ids):
            raise DataFormatError(
                "HDF5Stimuli needs a file and one row per id",
                found=f"{len(self.rows)} rows for {len(self.ids)} ids",
            )

    @property
    def has_images(self) -> bool:
        """Always: images are rows of the HDF5 array."""
        return True

    def subset(self, index: Sequence[int] | np.ndarray) -> HDF5Stimuli:
        """Return the stimuli at ``index`` (positions), in that order."""
        idx = [int(i) for i in np.asarray(index).ravel()]
        return HDF5Stimuli(
            ids=[self.ids[i] for i in idx],
            captions=None if self.captions is None else [self.captions[i] for i in idx],
            hdf5=self.hdf5,
            rows=[self.rows[i] for i in idx],
            dataset=self.dataset,
        )

    def _array(self) -> h5py.Dataset:
        try:
            handle = h5py.File(self.hdf5, "r")
        except OSError as exc:
            raise DataFormatError(
                "cannot open the stimulus HDF5 file", path=self.hdf5, found=str(exc)
            ) from exc
        if self.dataset not in handle:
            handle.close()
            raise DataFormatError(
                "the HDF5 file lacks the image array",
                path=self.hdf5,
                expected=f"dataset {self.dataset!r}",
                found=f"{list(handle)}",
            )
        return handle[self.dataset]

    def image(self, i: int) -> Image.Image:
        """Stimulus ``i`` as an RGB PIL image (one row of the HDF5 array, read on demand)."""
        array = self._array()
        try:
            return Image.fromarray(np.asarray(array[self.rows[i]], dtype=np.uint8)).convert("RGB")
        finally:
            array.file.close()

    @cached_property
    def content_hashes(self) -> tuple[str, ...]:
        """SHA-256 of each image's pixel bytes."""
        array = self._array()
        try:
            return tuple(hashlib.sha256(np.asarray(array[r]).tobytes()).hexdigest() for r in self.rows)
        finally:
            array.file.close()


def check_brick(path: Path, dataset: str, max_id: int) -> None:
    if not path.is_file():
        raise MissingFileError(
            "NSD stimulus file not found",
            path=path,
            found=listing(path.parent),
            fix="download nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5, or pass images=False",
        )
    with h5py.File(path, "r") as f:
        if dataset not in f or f[dataset].ndim != 4 or f[dataset].shape[-1] != 3:
            found = f"{dataset} of shape {f[dataset].shape}" if dataset in f else f"datasets {list(f)}"
            raise DataFormatError(
                "the stimulus file is not an image brick",
                path=path,
                expected=f"dataset {dataset!r} of shape (n, height, width, 3)",
                found=found,
            )
        if f[dataset].shape[0] <= max_id:
            raise DataFormatError(
                "the stimulus file has fewer images than the design needs",
                path=path,
                expected=f"more than {max_id} images",
                found=f"{f[dataset].shape[0]}",
            )
