"""Progress bars for long work: tqdm, switched off by ``BRAINCODE_PROGRESS=0`` or the CLI's ``--quiet``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Whether progress bars are shown (``BRAINCODE_PROGRESS`` unset or not ``"0"``)."""
    return os.environ.get("BRAINCODE_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, enabled: bool = True) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar unless progress is disabled globally or by ``enabled=False``.

    Examples
    --------
    >>> sum(progress(range(3), desc="demo", enabled=False))
    3
    """
    if not (enabled and progress_enabled()):
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False)
