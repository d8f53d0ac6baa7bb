"""Captions of image stimuli, read from a ``captions.csv`` with columns ``image`` (file name) and ``caption``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from braincode.errors import DataFormatError

_SHOW = 5  # how many offending items a message lists


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
