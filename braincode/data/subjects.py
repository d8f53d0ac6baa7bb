"""Subject ids: one spelling (``"subj01"``) for every loader, and the subject folders of a data root."""

from __future__ import annotations

import re
from pathlib import Path

from braincode.errors import ConfigError, MissingFileError


def subject_number(subject: str | int) -> int:
    """The number of a subject given as ``"subj01"``, ``"01"``, ``"1"`` or ``1`` (1 or more).

    Examples
    --------
    >>> subject_number("subj02"), subject_number(" 7"), subject_number(3)
    (2, 7, 3)
    """
    match = re.fullmatch(r"(?:subj)?0*([1-9]\d*)", str(subject).strip())
    if match is None or isinstance(subject, bool):
        raise ConfigError(
            f"cannot read {subject!r} as a subject",
            expected="'subj01', '1' or 1 (numbers start at 1)",
            found=repr(subject),
            fix="pass the subject number or folder name, e.g. subject='subj01'",
        )
    return int(match.group(1))


def subject_id(subject: str | int) -> str:
    """Normalise a subject given as ``"subj01"``, ``"01"``, ``"1"`` or ``1`` to ``"subj01"``.

    Examples
    --------
    >>> subject_id(1), subject_id("1"), subject_id("subj01")
    ('subj01', 'subj01', 'subj01')
    """
    return f"subj{subject_number(subject):02d}"


def subject_dir(root: str | Path, subject: str | int) -> Path:
    """Return ``<root>/subjNN``, or raise :class:`MissingFileError` listing the subjects that are there.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "subj01").mkdir()
    >>> subject_dir(root, 1).name
    'subj01'
    """
    root = Path(root)
    path = root / subject_id(subject)
    if path.is_dir():
        return path
    if not root.is_dir():
        raise MissingFileError(
            "the data folder does not exist",
            path=root,
            expected="a folder holding subjNN/ folders",
            found="nothing",
            fix="pass the folder that contains subj01/, subj02/, ...",
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and re.fullmatch(r"subj\d+", p.name))
    raise MissingFileError(
        "no folder for this subject",
        path=path,
        expected=f"a folder {path.name}/ in {root}",
        found=f"subjects {found}" if found else "no subjNN/ folders at all",
        fix="pick one of the subjects found"
        if found
        else "pass the folder that contains subj01/, subj02/, ...",
    )
