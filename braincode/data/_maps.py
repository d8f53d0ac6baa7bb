"""Helpers shared by the NIfTI, surface and NSD loaders: stimuli lists, integer scaling and ROI label tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from braincode import atlases
from braincode.data.core import Stimuli
from braincode.errors import ConfigError, DataFormatError, MissingFileError

PathLike = str | Path


def read_path_list(path: Path) -> list[PathLike]:
    """The non-blank lines of a text file of paths, relative ones taken from the file's folder.

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "stimuli.txt"
    >>> _ = f.write_text("a.png\\n\\n/abs/b.png\\n")
    >>> rel, absolute = read_path_list(f)
    >>> rel == f.parent / "a.png", absolute
    (True, '/abs/b.png')
    """
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    return [p if Path(p).is_absolute() else path.parent / p for p in lines]


def as_stimuli(stimuli: Stimuli | Sequence[PathLike] | PathLike, n: int, source: PathLike) -> Stimuli:
    """Stimuli for ``n`` response rows: a :class:`Stimuli`, a list of image paths, or a text file of them.

    A text file lists one image path per line (relative paths are taken from the file's folder).
    """
    if isinstance(stimuli, (str, Path)):
        listing = Path(stimuli)
        if not listing.is_file():
            raise MissingFileError(
                "stimulus list not found", path=listing, fix="pass a text file, one path a line"
            )
        stimuli = read_path_list(listing)
    if not isinstance(stimuli, Stimuli):
        paths = [Path(p) for p in stimuli]
        stimuli = Stimuli(ids=[p.stem for p in paths], paths=paths)
    if len(stimuli) != n:
        raise DataFormatError(
            "the number of stimuli and of response samples differ",
            path=source,
            expected=f"{n} stimuli (one per volume / sample)",
            found=f"{len(stimuli)}",
            fix="list exactly one stimulus per sample, in acquisition order",
        )
    return stimuli


def divisor(dtype: np.dtype, scale: float | None, path: PathLike, *, scaled_in_header: bool = False) -> float:
    """Number to divide stored values by: ``scale``; integers stored without any scale are an error."""
    if scale is not None:
        if not np.isfinite(scale) or scale <= 0:
            raise ConfigError("scale must be a positive number", found=repr(scale))
        return float(scale)
    if np.issubdtype(dtype, np.integer) and not scaled_in_header:
        raise DataFormatError(
            "integer data without a scale factor",
            path=path,
            expected="floating-point values, or integers with a scale",
            found=f"{np.dtype(dtype).name} values and no scale in the header",
            fix="pass scale=... (NSD stores int16 betas x 300: scale=300)",
        )
    return 1.0


def resolve_labels(
    family: str, labels: Mapping[int, str] | PathLike | None, source: PathLike | None = None
) -> dict[int, str]:
    """Label table of an ROI family: a dict, a ``.ctab`` file, or braincode's NSD atlas for known families."""
    if isinstance(labels, Mapping):
        return {int(k): str(v) for k, v in labels.items()}
    if labels is not None:
        return atlases.read_ctab(labels)
    if family in atlases.atlas_families():
        return atlases.roi_labels(family)
    raise ConfigError(
        f"no label names for ROI family {family!r}",
        path=source,
        expected=f"one of braincode's NSD families {atlases.atlas_families()} or a label table",
        fix="pass roi_labels={family: 'path/to/family.ctab'} or a dict of value -> name",
    )


def listing(folder: Path, pattern: str = "*") -> str:
    """Short description of what a folder holds, for 'file not found' messages."""
    if not folder.is_dir():
        return f"no folder {folder}"
    names = sorted(p.name for p in folder.glob(pattern))
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return f"{folder} holds: {shown or 'nothing'}"
