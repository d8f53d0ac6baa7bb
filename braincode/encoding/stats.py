"""Statistics of per-voxel scores: significance and uncertainty, vectorised over voxels.

- significance: :func:`permutation_test` (optionally block-permuted), :func:`fdr_correct`;
- uncertainty: :func:`roi_bootstrap_ci` (bootstrap CI of the mean score within each ROI);
- everything per voxel at once: :func:`score_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from braincode.data.rois import roi_column, roi_families
from braincode.encoding.metrics import check_pair, normalized_score, pearson_r, r2_score
from braincode.errors import ConfigError, DataFormatError
from braincode.progress import progress

#: Bytes of float64 scratch memory that the batched loops below may allocate at once.
_SCRATCH_BYTES = 256 * 2**20


class PermutationResult(NamedTuple):
    """Observed per-voxel Pearson r and its permutation p-value."""

    r: np.ndarray
    pvalue: np.ndarray


def _zscore_columns(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled so that ``(a * b).mean(0)`` is their Pearson r; constant columns become 0."""
    x = x - x.mean(0)
    sd = x.std(0)
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)


def _permutations(
    n: int, n_permutations: int, block_size: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Row permutations (n_permutations, n); with ``block_size``, contiguous blocks are shuffled whole."""
    if block_size is None or block_size <= 1:
        return rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1)
    blocks = np.array_split(np.arange(n), int(np.ceil(n / block_size)))
    orders = rng.permuted(np.tile(np.arange(len(blocks)), (n_permutations, 1)), axis=1)
    return np.stack([np.concatenate([blocks[b] for b in order]) for order in orders])


def permutation_test(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_permutations: int = 1000,
    block_size: int | None = None,
    alternative: Literal["greater", "two-sided"] = "greater",
    random_state: int | np.random.Generator | None = None,
) -> PermutationResult:
    """Per-voxel permutation p-values for the Pearson r between measured and predicted responses.

    The rows (samples) of ``y_true`` are permuted, the same permutation for every voxel, and r is recomputed;
    ``p = (1 + #{r_perm >= r}) / (1 + n_permutations)`` (``|r|`` for ``"two-sided"``). For samples that are
    correlated in time (e.g. consecutive trials), pass ``block_size`` to shuffle contiguous blocks of that
    many samples whole, which keeps the within-block dependence under the null.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (n_samples, n_voxels)
    n_permutations : int
        Number of permutations; the smallest attainable p is ``1 / (n_permutations + 1)``.
    block_size : int, optional
        Block length for a block permutation.
    alternative : {"greater", "two-sided"}
    random_state : int, Generator or None

    Returns
    -------
    PermutationResult
        ``r`` and ``pvalue``, each of shape (n_voxels,).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.standard_normal((100, 2))
    >>> pred = np.c_[y[:, 0] + 0.5 * rng.standard_normal(100), rng.standard_normal(100)]
    >>> res = permutation_test(y, pred, n_permutations=199, random_state=0)
    >>> bool(res.pvalue[0] <= 0.005), bool(res.pvalue[1] > 0.05)
    (True, True)
    """
    y_true, y_pred = check_pair(y_true, y_pred)
    if n_permutations < 1:
        raise ConfigError("n_permutations must be >= 1", found=str(n_permutations))
    if alternative not in ("greater", "two-sided"):
        raise ConfigError("unknown alternative", expected='"greater" or "two-sided"', found=repr(alternative))
    n, n_vox = y_true.shape
    a, b = _zscore_columns(y_true), _zscore_columns(y_pred)
    r = (a * b).mean(0)
    observed = np.abs(r) if alternative == "two-sided" else r
    perms = _permutations(n, n_permutations, block_size, np.random.default_rng(random_state))
    exceed = np.zeros(n_vox, dtype=np.int64)
    batch = max(1, _SCRATCH_BYTES // (8 * n * max(n_vox, 1)))
    starts = range(0, n_permutations, batch)
    for start in progress(starts, desc="permutations", total=len(starts)):
        null = np.einsum("pnv,nv->pv", a[perms[start : start + batch]], b) / n
        if alternative == "two-sided":
            null = np.abs(null)
        exceed += (null >= observed - 1e-12).sum(0)
    return PermutationResult(r=r, pvalue=(1.0 + exceed) / (1.0 + n_permutations))


def fdr_correct(
    pvalues: np.ndarray, *, alpha: float = 0.05, method: Literal["bh", "by"] = "bh"
) -> tuple[np.ndarray, np.ndarray]:
    """False-discovery-rate adjusted p-values and the voxels significant at ``alpha``.

    Wraps :func:`scipy.stats.false_discovery_control` (Benjamini-Hochberg ``"bh"`` or the more conservative
    Benjamini-Yekutieli ``"by"``); NaN p-values stay NaN and are not counted as tests.

    Returns
    -------
    adjusted : ndarray of float64
    significant : ndarray of bool (``adjusted <= alpha``)

    Examples
    --------
    >>> q, sig = fdr_correct([0.01, 0.02, 0.03, 0.5])
    >>> q.round(3).tolist(), sig.tolist()
    ([0.04, 0.04, 0.04, 0.5], [True, True, True, False])
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if not 0 < alpha < 1:
        raise ConfigError("alpha must be between 0 and 1", found=str(alpha))
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise DataFormatError(
            "p-values must lie in [0, 1]", found=f"range {p[finite].min()}..{p[finite].max()}"
        )
    adjusted = np.full(p.shape, np.nan)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(p[finite], method=method)
    return adjusted, np.where(finite, adjusted <= alpha, False)


def roi_bootstrap_ci(
    scores: np.ndarray,
    voxels: pd.DataFrame,
    family: str | Sequence[str],
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Mean of a per-voxel score within each ROI of ``voxels[family]``, with a percentile bootstrap CI.

    Voxels of each ROI are resampled with replacement ``n_bootstrap`` times; NaN scores are left out. Voxels
    whose label is ``""`` (outside every ROI of the family) are skipped.

    Parameters
    ----------
    scores : array of shape (n_voxels,)
    voxels : DataFrame
        Voxel table with one row per voxel and the ROI family (a ``roi:<family>`` column).
    family : str or sequence of str
        ROI famil(ies), e.g. ``"prf-visualrois"`` or ``Dataset.roi_families``; any other string column of the
        table (e.g. ``"hemisphere"``) works too.
        Several families give one table with the rows of each in turn.
    n_bootstrap : int
    confidence : float
        Width of the interval, e.g. 0.95.
    random_state : int, Generator or None

    Returns
    -------
    DataFrame
        Columns ``family, roi, n_voxels, mean, ci_low, ci_high``, one row per ROI in order of first appearance.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> vox = pd.DataFrame({"hemisphere": ["lh"] * 4, "vertex": range(4),
    ...                     "roi:streams": ["early"] * 2 + ["", "ventral"]})
    >>> table = roi_bootstrap_ci(np.array([1.0, 3.0, 9.0, 5.0]), vox, "streams", random_state=0)
    >>> table[["roi", "n_voxels", "mean"]].values.tolist()
    [['early', 2, 2.0], ['ventral', 1, 5.0]]
    """
    scores = np.asarray(scores, dtype=np.float64)
    families = [family] if isinstance(family, str) else list(family)
    columns = {f: roi_column(f) if f in roi_families(voxels) else f for f in families}
    absent = [f for f, c in columns.items() if c not in voxels.columns]
    if absent:
        raise DataFormatError(
            "the voxel table has no such ROI family",
            expected=f"one of {roi_families(voxels)} or a column of {list(voxels.columns)}",
            found=f"{absent}",
        )
    if scores.shape != (len(voxels),):
        raise DataFormatError(
            "one score per voxel-table row is needed", expected=f"({len(voxels)},)", found=str(scores.shape)
        )
    if not 0 < confidence < 1 or n_bootstrap < 1:
        raise ConfigError(
            "need 0 < confidence < 1 and n_bootstrap >= 1", found=f"{confidence}, {n_bootstrap}"
        )
    rng = np.random.default_rng(random_state)
    tail = 100 * (1 - confidence) / 2
    rows = []
    for fam in families:
        labels = voxels[columns[fam]].fillna("").astype(str).to_numpy()
        for roi in pd.unique(labels[labels != ""]):
            values = scores[(labels == roi) & np.isfinite(scores)]
            if values.size == 0:
                rows.append((fam, roi, 0, np.nan, np.nan, np.nan))
                continue
            low, high = np.percentile(_bootstrap_means(values, n_bootstrap, rng), [tail, 100 - tail])
            rows.append((fam, roi, values.size, float(values.mean()), float(low), float(high)))
    return pd.DataFrame(rows, columns=["family", "roi", "n_voxels", "mean", "ci_low", "ci_high"])


def _bootstrap_means(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_bootstrap`` resamples (with replacement) of ``values``, drawn in memory-bounded chunks."""
    chunk = max(1, _SCRATCH_BYTES // (8 * values.size))
    return np.concatenate(
        [
            values[rng.integers(0, values.size, size=(min(chunk, n_bootstrap - s), values.size))].mean(1)
            for s in range(0, n_bootstrap, chunk)
        ]
    )


def score_table(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    noise_ceiling: np.ndarray | None = None,
    n_permutations: int = 0,
    block_size: int | None = None,
    alpha: float = 0.05,
    random_state: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Every per-voxel statistic in one table (one row per voxel, in voxel-table order).

    Columns: ``r``, ``r2``; with ``n_permutations > 0`` also ``pvalue`` (:func:`permutation_test`), ``qvalue``
    and ``significant`` (:func:`fdr_correct` at ``alpha``); with ``noise_ceiling`` also ``noise_ceiling`` and
    ``normalized_score`` (:func:`normalized_score`, percent).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.standard_normal((50, 3))
    >>> t = score_table(y, y + rng.standard_normal((50, 3)), noise_ceiling=np.full(3, 0.8), n_permutations=99,
    ...                 random_state=0)
    >>> list(t.columns)
    ['r', 'r2', 'pvalue', 'qvalue', 'significant', 'noise_ceiling', 'normalized_score']
    """
    table = pd.DataFrame({"r": pearson_r(y_true, y_pred), "r2": r2_score(y_true, y_pred)})
    if n_permutations > 0:
        result = permutation_test(
            y_true, y_pred, n_permutations=n_permutations, block_size=block_size, random_state=random_state
        )
        table["pvalue"] = result.pvalue
        table["qvalue"], table["significant"] = fdr_correct(result.pvalue, alpha=alpha)
    if noise_ceiling is not None:
        table["noise_ceiling"] = np.asarray(noise_ceiling, dtype=np.float64)
        table["normalized_score"] = normalized_score(table["r"].to_numpy(), table["noise_ceiling"].to_numpy())
    return table
