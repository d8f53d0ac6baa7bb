"""ROI atlases shipped with braincode (families, integer labels, names, colours) and fsaverage mesh sizes.

The atlas files live in the top-level ``atlases/`` folder of the repository (one JSON file per atlas). A wheel
installs them as data files under ``<prefix>/share/braincode/atlases`` (``[tool.setuptools.data-files]`` in
``pyproject.toml``), which :func:`atlas_dir` finds through the installed distribution's file list; a source
checkout or an editable install reads the repository folder directly.
"""

from __future__ import annotations

import importlib.metadata
import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from braincode.errors import ConfigError, DataFormatError, MissingFileError

#: Vertices per hemisphere of fsaverage and of fsaverage5 (the first 10,242 fsaverage vertices).
N_VERTICES = {"fsaverage": 163_842, "fsaverage6": 40_962, "fsaverage5": 10_242, "fsaverage4": 2_562}


def atlas_dir() -> Path:
    """Folder holding the shipped atlas JSON files (repository checkout first, then the installed data files).

    Examples
    --------
    >>> (atlas_dir() / "nsd.json").is_file()
    True
    """
    repo = Path(__file__).resolve().parent.parent / "atlases"
    if (repo / "nsd.json").is_file():
        return repo
    try:
        files = importlib.metadata.files("braincode") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "nsd.json" and "atlases" in f.parts:
            return Path(f.locate()).resolve().parent
    raise MissingFileError(
        "braincode's atlas files are not installed",
        path=repo,
        expected="nsd.json in the repository's atlases/ folder or in <prefix>/share/braincode/atlases",
        fix="reinstall braincode (pip install --force-reinstall braincode)",
    )


def list_atlases() -> list[str]:
    """Names of the shipped atlases.

    Examples
    --------
    >>> "nsd" in list_atlases()
    True
    """
    return sorted(p.stem for p in atlas_dir().glob("*.json"))


@cache
def _load(atlas: str) -> dict:
    path = atlas_dir() / f"{atlas}.json"
    if not path.is_file():
        raise ConfigError("unknown atlas", expected=f"one of {list_atlases()}", found=repr(atlas))
    return json.loads(path.read_text())


def atlas_labels(atlas: str = "nsd") -> pd.DataFrame:
    """Every label of an atlas as a table with columns ``family, value, name, color``.

    Examples
    --------
    >>> t = atlas_labels()
    >>> t[t.family == "floc-places"].name.tolist()
    ['OPA', 'PPA', 'RSC']
    """
    families = _load(atlas)["families"]
    rows = [
        (fam, lab["value"], lab["name"], lab["color"])
        for fam, spec in families.items()
        for lab in spec["labels"]
    ]
    return pd.DataFrame(rows, columns=["family", "value", "name", "color"])


def atlas_families(atlas: str = "nsd") -> list[str]:
    """ROI-family names of an atlas, in file order.

    Examples
    --------
    >>> atlas_families()[:2]
    ['nsdgeneral', 'prf-visualrois']
    """
    return list(_load(atlas)["families"])


def _family(family: str, atlas: str) -> list[dict]:
    families = _load(atlas)["families"]
    if family not in families:
        raise ConfigError(
            f"atlas {atlas!r} has no ROI family {family!r}", expected=f"one of {list(families)}"
        )
    return families[family]["labels"]


def roi_labels(family: str, atlas: str = "nsd") -> dict[int, str]:
    """Integer label -> ROI name of one family (0 = unlabelled and -1 = outside the brain are not listed).

    Examples
    --------
    >>> roi_labels("prf-visualrois")[7]
    'hV4'
    """
    return {int(lab["value"]): lab["name"] for lab in _family(family, atlas)}


def roi_colors(family: str, atlas: str = "nsd") -> dict[str, str]:
    """ROI name -> hex colour for plots.

    Examples
    --------
    >>> roi_colors("floc-faces")["FFA-1"]
    '#e6550d'
    """
    return {lab["name"]: lab["color"] for lab in _family(family, atlas)}


def label_names(
    values: np.ndarray, labels: dict[int, str], *, source: str | Path | None = None
) -> np.ndarray:
    """Map integer ROI labels to names; 0, negative values and NaN become ``""`` (not in any ROI).

    Parameters
    ----------
    values : array of numbers
        Label per voxel, as read from an NSD ROI file (floats allowed when they hold whole numbers).
    labels : dict of int to str
        From :func:`roi_labels` or a ``.ctab`` file.
    source : str or Path, optional
        File the values came from, named in errors.

    Examples
    --------
    >>> label_names(np.array([-1, 0, 2, 7]), roi_labels("prf-visualrois")).tolist()
    ['', '', 'V1d', 'hV4']
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if np.any(values[finite] != np.round(values[finite])):
        raise DataFormatError(
            "ROI labels must be whole numbers",
            path=source,
            found="fractional values",
            fix="resample label volumes with nearest-neighbour interpolation",
        )
    ints = np.where(finite, values, 0).astype(np.int64)
    unknown = sorted(set(np.unique(ints[ints > 0]).tolist()) - set(labels))
    if unknown:
        raise DataFormatError(
            "ROI file holds labels its label table does not name",
            path=source,
            expected=f"labels among {sorted(labels)}",
            found=f"{unknown}",
            fix="pass the matching .ctab file or atlas family",
        )
    return pd.Series(ints.ravel()).map(labels).fillna("").to_numpy(dtype=object).reshape(ints.shape)


def read_ctab(path: str | Path) -> dict[int, str]:
    """Read a FreeSurfer / NSD colour table (``<family>.mgz.ctab``): lines ``value name [r g b a]``.

    Value 0 (``Unknown``) is dropped, as in :func:`roi_labels`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "floc-places.mgz.ctab"
    >>> _ = p.write_text("0 Unknown\\n1 OPA\\n2 PPA\\n3 RSC\\n")
    >>> read_ctab(p)
    {1: 'OPA', 2: 'PPA', 3: 'RSC'}
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            "label table not found", path=path, fix="copy <family>.mgz.ctab from NSD's label folder"
        )
    labels: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2 or not fields[0].lstrip("-").isdigit():
            raise DataFormatError(
                f"line {number} of the label table is not 'value name ...'", path=path, found=repr(line)
            )
        if int(fields[0]) > 0:
            labels[int(fields[0])] = fields[1]
    return labels
