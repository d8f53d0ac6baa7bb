"""Regions of interest on a voxel table: the one place that knows where ROI labels live and how ROIs are named.

**Where families live.** A voxel table (``Dataset.voxels``, ``Responses.voxels``, a fit's ``scores.csv``) keeps
one string column per ROI family, named ``"roi:<family>"`` (:data:`ROI_PREFIX`), e.g. ``"roi:floc-faces"``, whose
values are ROI names, ``""`` for a voxel outside every ROI of the family. The prefix is the record: a column is an
ROI family if and only if its name starts with ``roi:``, so the families survive ``pd.concat`` with score
columns, ``to_csv``/``read_csv`` and any column a later step adds. Functions here take the family *name*
(``"floc-faces"``); :func:`roi_column` gives its column.

**One selection grammar** (:func:`select_rois`, used by caption, synthesize, pipeline and report):

- ``"family:name"``, e.g. ``"floc-faces:FFA-1"``: that ROI of that family;
- ``"name"``, e.g. ``"FFA-1"``: the ROI of that name in every family that has it;
- ``"family"``, e.g. ``"floc-faces"``: every ROI of the family, one by one.

A name may leave out its number: ``"FFA"`` (or ``"floc-faces:FFA"``) stands for ``FFA-1`` and ``FFA-2``, when no
ROI is called exactly ``FFA``. A selection that matches nothing raises :class:`~braincode.errors.ConfigError`
listing the families and ROIs the table has.

Examples
--------
>>> import numpy as np, pandas as pd
>>> vox = with_rois(pd.DataFrame({"hemisphere": ["lh"] * 4, "vertex": range(4)}),
...                 {"floc-faces": ["FFA-1", "FFA-2", "", ""], "floc-places": ["", "", "PPA", ""]})
>>> list(vox.columns), roi_families(vox)
(['hemisphere', 'vertex', 'roi:floc-faces', 'roi:floc-places'], ['floc-faces', 'floc-places'])
>>> [(r.family, r.name, r.mask.nonzero()[0].tolist()) for r in select_rois(vox, "FFA")]
[('floc-faces', 'FFA-1', [0]), ('floc-faces', 'FFA-2', [1])]
>>> roi_mask(vox, ["floc-faces:FFA-2", "PPA"]).tolist()
[False, True, True, False]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from braincode.errors import ConfigError, DataFormatError

#: Column-name prefix that marks an ROI-family column of a voxel table.
ROI_PREFIX = "roi:"

#: The ROI families of NSD and of the Algonauts 2023 challenge, in the order their columns appear.
FAMILIES = ("prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams")


class Roi(NamedTuple):
    """One selected ROI: its family, its name and a boolean mask over the voxel table's rows."""

    family: str
    name: str
    mask: np.ndarray


def roi_column(family: str) -> str:
    """Column of the voxel table that holds ROI family ``family``.

    Examples
    --------
    >>> roi_column("floc-faces")
    'roi:floc-faces'
    """
    return family if family.startswith(ROI_PREFIX) else f"{ROI_PREFIX}{family}"


def roi_families(voxels: pd.DataFrame) -> list[str]:
    """Names of the ROI families of a voxel table (its ``roi:`` columns), in column order.

    Examples
    --------
    >>> roi_families(pd.DataFrame({"vertex": [0], "roi:streams": ["early"], "r": [0.1]}))
    ['streams']
    """
    return [str(c)[len(ROI_PREFIX) :] for c in voxels.columns if str(c).startswith(ROI_PREFIX)]


def with_rois(voxels: pd.DataFrame, columns: Mapping[str, Sequence[str] | np.ndarray]) -> pd.DataFrame:
    """A copy of ``voxels`` with ROI families added (or replaced): family name -> one ROI name per row.

    Missing labels (None, NaN) become ``""``, the label of voxels outside every ROI of the family.

    Examples
    --------
    >>> with_rois(pd.DataFrame({"vertex": [3, 4]}), {"streams": ["early", None]})["roi:streams"].tolist()
    ['early', '']
    """
    out = voxels.copy()
    for family, labels in columns.items():
        values = pd.Series(np.asarray(labels, dtype=object)).fillna("").astype(str).to_numpy()
        if values.shape != (len(voxels),):
            raise DataFormatError(
                f"ROI family {family!r} does not give one label per voxel",
                expected=f"{len(voxels)} labels",
                found=f"shape {values.shape}",
            )
        out[roi_column(family)] = values
    return out


def _check_family(voxels: pd.DataFrame, family: str) -> str:
    column = roi_column(family)
    if column not in voxels.columns:
        raise ConfigError(
            f"the voxel table has no ROI family {family!r}",
            expected=f"one of {roi_families(voxels)}",
            found=repr(family),
            fix="pick one of the families listed (ROI-family columns are named roi:<family>)",
        )
    return column


def roi_labels(voxels: pd.DataFrame, family: str) -> np.ndarray:
    """ROI name of every voxel in ``family`` (``""`` outside every ROI of the family), as a str array.

    Examples
    --------
    >>> roi_labels(pd.DataFrame({"roi:streams": ["early", ""]}), "streams").tolist()
    ['early', '']
    """
    return voxels[_check_family(voxels, family)].fillna("").astype(str).to_numpy()


def roi_names(voxels: pd.DataFrame, family: str) -> list[str]:
    """The ROIs of ``family`` that have at least one voxel, sorted.

    Examples
    --------
    >>> roi_names(pd.DataFrame({"roi:floc-faces": ["OFA", "", "FFA-1", "OFA"]}), "floc-faces")
    ['FFA-1', 'OFA']
    """
    return sorted(set(roi_labels(voxels, family).tolist()) - {""})


def _grammar_error(voxels: pd.DataFrame, spec: str, why: str) -> ConfigError:
    choices = [f"{f}:{r}" for f in roi_families(voxels) for r in roi_names(voxels, f)]
    return ConfigError(
        f"no ROI named {spec!r} in the voxel table ({why})",
        expected=f"'family:name', 'name' or 'family'; families {roi_families(voxels)}; ROIs {choices}",
        found=repr(spec),
        fix="pick an ROI from the list (a name without its number, e.g. FFA, stands for FFA-1 and FFA-2)",
    )


def _match(voxels: pd.DataFrame, families: Sequence[str], name: str) -> list[Roi]:
    """ROIs called ``name`` in ``families``; failing that, those called ``name-<suffix>``."""
    labels = {f: roi_labels(voxels, f) for f in families}
    exact = [Roi(f, name, lab == name) for f, lab in labels.items() if name and (lab == name).any()]
    if exact:
        return exact
    return [
        Roi(f, roi, lab == roi)
        for f, lab in labels.items()
        for roi in sorted(set(lab.tolist()) - {""})
        if name and roi.startswith(f"{name}-")
    ]


def select_rois(voxels: pd.DataFrame, spec: str | Sequence[str]) -> list[Roi]:
    """The ROIs a selection names (module docstring: ``family:name``, ``name`` or ``family``), in order.

    Parameters
    ----------
    voxels : DataFrame
        A voxel table with ``roi:<family>`` columns.
    spec : str or sequence of str
        One selection or several; the result concatenates theirs (duplicates dropped).

    Returns
    -------
    list of Roi
        ``(family, name, mask)`` per ROI; a family selects each of its ROIs.

    Raises
    ------
    ConfigError
        When a selection matches no ROI; the message lists the table's families and ROIs.

    Examples
    --------
    >>> vox = pd.DataFrame({"roi:floc-faces": ["FFA-1", "OFA"], "roi:streams": ["ventral", "lateral"]})
    >>> [(r.family, r.name) for r in select_rois(vox, ["floc-faces", "streams:ventral"])]
    [('floc-faces', 'FFA-1'), ('floc-faces', 'OFA'), ('streams', 'ventral')]
    >>> select_rois(vox, "PPA")
    Traceback (most recent call last):
    ...
    braincode.errors.ConfigError: no ROI named 'PPA' in the voxel table (no ROI of that name); ...
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: dict[tuple[str, str], Roi] = {}
    families = roi_families(voxels)
    for one in specs:
        text = str(one).strip()
        if text.startswith(ROI_PREFIX) and text[len(ROI_PREFIX) :] in families:
            text = text[len(ROI_PREFIX) :]
        if text in families:
            hits = [Roi(text, r, roi_labels(voxels, text) == r) for r in roi_names(voxels, text)]
            why = "the family labels no voxel"
        elif ":" in text:
            family, _, name = text.partition(":")
            if family not in families:
                raise _grammar_error(voxels, one, f"no family {family!r}")
            hits, why = _match(voxels, [family], name), f"no ROI {name!r} in {family}"
        else:
            hits, why = _match(voxels, families, text), "no ROI of that name"
        if not hits:
            raise _grammar_error(voxels, one, why)
        out.update({(r.family, r.name): r for r in hits})
    return list(out.values())


def roi_mask(voxels: pd.DataFrame, spec: str | Sequence[str]) -> np.ndarray:
    """Boolean mask of the voxels in any ROI a selection names (see :func:`select_rois`).

    Examples
    --------
    >>> roi_mask(pd.DataFrame({"roi:floc-faces": ["FFA-1", "FFA-2", ""]}), "FFA").tolist()
    [True, True, False]
    """
    rois = select_rois(voxels, spec)
    return np.logical_or.reduce([r.mask for r in rois])


def roi_index(voxels: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Row indices of every ROI of every family, ``{family: {roi: indices}}`` (ROIs sorted).

    Examples
    --------
    >>> idx = roi_index(pd.DataFrame({"roi:floc-faces": ["FFA-1", "", "FFA-1"]}))
    >>> {k: v.tolist() for k, v in idx["floc-faces"].items()}
    {'FFA-1': [0, 2]}
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for family in roi_families(voxels):
        labels = roi_labels(voxels, family)
        out[family] = {roi: np.flatnonzero(labels == roi) for roi in roi_names(voxels, family)}
    return out


def roi_means(
    values: np.ndarray, voxels: pd.DataFrame, spec: str | Sequence[str] | None = None, *, axis: int = 0
) -> pd.DataFrame:
    """Mean of ``values`` over the voxels of each selected ROI (every ROI of every family by default).

    Parameters
    ----------
    values : ndarray
        Has one axis of length ``len(voxels)``: e.g. (n_voxels, D) projections (``axis=0``) or
        (n_images, n_voxels) predictions (``axis=1``).
    voxels : DataFrame
    spec : str or sequence of str, optional
        A selection (:func:`select_rois`); every ROI of every family when None.
    axis : int
        The voxel axis of ``values``.

    Returns
    -------
    DataFrame
        ``family``, ``roi``, ``voxels`` (count) and ``mean``: a float for 1-D ``values``, otherwise the array of
        the remaining axes (float64).

    Examples
    --------
    >>> vox = pd.DataFrame({"roi:floc-faces": ["FFA-1", "", "FFA-1"]})
    >>> roi_means(np.array([1.0, 5.0, 3.0]), vox)[["roi", "voxels", "mean"]].values.tolist()
    [['FFA-1', 2, 2.0]]
    >>> roi_means(np.array([[1.0, 5.0, 3.0], [0.0, 0.0, 1.0]]), vox, "FFA-1", axis=1)["mean"][0].tolist()
    [2.0, 0.5]
    """
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    if values.shape[0] != len(voxels):
        raise DataFormatError(
            "values and voxel table disagree",
            expected=f"{len(voxels)} entries along axis {axis}",
            found=f"{values.shape[0]}",
        )
    if spec is None:
        rois = [Roi(f, r, roi_labels(voxels, f) == r) for f in roi_families(voxels) for r in roi_names(voxels, f)]
    else:
        rois = select_rois(voxels, spec)
    rows = []
    for roi in rois:
        mean = values[roi.mask].mean(0)
        rows.append({"family": roi.family, "roi": roi.name, "voxels": int(roi.mask.sum()),
                     "mean": float(mean) if mean.ndim == 0 else mean})
    return pd.DataFrame(rows, columns=["family", "roi", "voxels", "mean"])


def roi_table(scores: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean of ``columns`` per ROI of every ROI family, then over all voxels.

    Parameters
    ----------
    scores : DataFrame
        A voxel table with score columns (e.g. ``scores.csv``).
    columns : sequence of str
        The numeric columns to average.

    Returns
    -------
    DataFrame
        ``family``, ``roi``, ``voxels`` (count) and one mean per entry of ``columns``; voxels outside every ROI of
        a family are left out of that family; the last row (``family="all"``, ``roi="all"``) covers every voxel.

    Examples
    --------
    >>> s = pd.DataFrame({"roi:streams": ["early", "early", ""], "r": [0.2, 0.4, 0.0]})
    >>> roi_table(s, ["r"]).round(3).values.tolist()
    [['streams', 'early', 2, 0.3], ['all', 'all', 3, 0.2]]
    """
    columns = list(columns)
    absent = [c for c in columns if c not in scores.columns]
    if absent:
        raise ConfigError("the score table lacks columns", expected=f"{columns}", found=f"missing {absent}")
    rows = []
    for family in roi_families(scores):
        labels = roi_labels(scores, family)
        for roi in roi_names(scores, family):
            group = scores.loc[labels == roi, columns]
            rows.append({"family": family, "roi": roi, "voxels": len(group), **group.mean().to_dict()})
    rows.append({"family": "all", "roi": "all", "voxels": len(scores), **scores[columns].mean().to_dict()})
    return pd.DataFrame(rows, columns=["family", "roi", "voxels", *columns])


def roi_groups(
    voxels: pd.DataFrame, families: Sequence[str] | None = None, *, by_hemisphere: bool = True
) -> np.ndarray:
    """One group label per voxel: its first ROI over ``families`` (in order), per hemisphere.

    Voxels outside every ROI of every family get ``"other"``. With the Algonauts families prf-visualrois,
    floc-bodies, floc-faces, floc-places and floc-words this gives the transformer brain encoder's 24 ROIs +
    "other" per hemisphere (one query each in a routing readout).

    Parameters
    ----------
    voxels : DataFrame
    families : sequence of str, optional
        Families in order of precedence; all of the table's by default.
    by_hemisphere : bool
        Prefix each label with the voxel's hemisphere (``"lh/FFA-1"``).

    Examples
    --------
    >>> vox = pd.DataFrame({"hemisphere": ["lh", "lh", "rh"], "vertex": [0, 1, 0],
    ...                     "roi:floc-faces": ["FFA-1", "", "FFA-1"]})
    >>> roi_groups(vox).tolist()
    ['lh/FFA-1', 'lh/other', 'rh/FFA-1']
    """
    families = roi_families(voxels) if families is None else list(families)
    labels = np.full(len(voxels), "other", dtype=object)
    unset = np.ones(len(voxels), dtype=bool)
    for family in families:
        names = roi_labels(voxels, family)
        take = unset & (names != "")
        labels[take] = names[take]
        unset &= ~take
    if by_hemisphere:
        labels = voxels["hemisphere"].astype(str).to_numpy().astype(object) + "/" + labels
    return labels.astype(str)
