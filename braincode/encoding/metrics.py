"""Per-voxel scores and their statistics, computed in float64 and vectorised over voxels.

- scores: :func:`pearson_r`, :func:`r2_score`;
- noise ceilings: :func:`~braincode.data.reliability.noise_ceiling` (NSD's ncsnr formula, mixed repeat counts as
  Algonauts; it lives in the data layer and is re-exported here), :func:`ncsnr_from_repeats`, :func:`repeat_noise_ceiling`, :func:`split_half_reliability`;
- the Algonauts noise-normalised score: :func:`normalized_score` (per voxel), :func:`algonauts_score` (mean);
- significance: :func:`permutation_test` (optionally block-permuted), :func:`fdr_correct`;
- uncertainty: :func:`roi_bootstrap_ci` (bootstrap CI of the mean score within each ROI);
- everything per voxel at once: :func:`score_table`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from braincode.data.reliability import noise_ceiling
from braincode.data.rois import roi_column, roi_families
from braincode.errors import ConfigError, DataFormatError
from braincode.progress import progress

logger = logging.getLogger(__name__)

#: Bytes of float64 scratch memory that the batched loops below may allocate at once.
_SCRATCH_BYTES = 256 * 2**20


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise DataFormatError(
            "measured and predicted responses must have the same 2-D shape",
            expected="two arrays of shape (n_samples, n_voxels)",
            found=f"{y_true.shape} and {y_pred.shape}",
        )
    return y_true, y_pred


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation per voxel (column); 0 where either column is constant.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.arange(6.0).reshape(3, 2)
    >>> pearson_r(y, 2 * y + 1).round(6).tolist()
    [1.0, 1.0]
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    a = y_true - y_true.mean(0)
    b = y_pred - y_pred.mean(0)
    denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(0) / denom
    return np.where(denom > 0, r, 0.0)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per voxel, as :func:`sklearn.metrics.r2_score` with ``multioutput="raw_values"``.

    A constant measured column scores 0 instead of -inf or NaN.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    ss_res = ((y_true - y_pred) ** 2).sum(0)
    ss_tot = ((y_true - y_true.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - ss_res / ss_tot
    return np.where(ss_tot > 0, r2, 0.0)


# --------------------------------------------------------------------------------------------- noise ceilings


def _check_repeats(repeats: np.ndarray) -> np.ndarray:
    repeats = np.asarray(repeats, dtype=np.float64)
    if repeats.ndim != 3 or repeats.shape[1] < 2:
        raise DataFormatError(
            "repeated responses must be a 3-D array with at least 2 repeats",
            expected="(n_images, n_repeats >= 2, n_voxels), NaN where an image has fewer repeats",
            found=str(repeats.shape),
            fix="stack the single-trial responses of each image along axis 1",
        )
    return repeats


def _repeat_counts(repeats: np.ndarray) -> np.ndarray:
    """Number of measured (non-NaN) repeats of each image, judged on the first voxel."""
    return np.isfinite(repeats[:, :, 0]).sum(1)


def ncsnr_from_repeats(repeats: np.ndarray) -> np.ndarray:
    """Noise-ceiling SNR per voxel from single-trial responses, as NSD computes it.

    ``noise_var`` is the mean over images (with >= 2 repeats) of the across-repeat variance (ddof=1);
    ``signal_var = max(total_var - noise_var, 0)`` with ``total_var`` the variance of all trials;
    ``ncsnr = sqrt(signal_var / noise_var)``. NSD applies this to betas z-scored per session.

    Parameters
    ----------
    repeats : array of shape (n_images, n_repeats, n_voxels)
        Single-trial responses; NaN marks repeats an image does not have.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.standard_normal((2000, 1, 1))
    >>> trials = signal + rng.standard_normal((2000, 3, 1))      # signal SD 1, noise SD 1
    >>> float(ncsnr_from_repeats(trials)[0].round(1))
    1.0
    """
    repeats = _check_repeats(repeats)
    repeated = _repeat_counts(repeats) >= 2
    if not repeated.any():
        raise DataFormatError("no image has two or more repeats", fix="pass the trials of repeated images")
    noise_var = np.nanvar(repeats[repeated], axis=1, ddof=1).mean(0)
    flat = repeats.reshape(-1, repeats.shape[2])
    total_var = np.nanvar(flat, axis=0, ddof=1)
    signal_var = np.maximum(total_var - noise_var, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.sqrt(signal_var / noise_var)
    return np.where(noise_var > 0, snr, np.nan)


def repeat_noise_ceiling(repeats: np.ndarray) -> np.ndarray:
    """Noise ceiling (0..1) of repeat-averaged responses, from their single trials.

    Combines :func:`ncsnr_from_repeats` with :func:`noise_ceiling`, taking each image's own repeat count.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> trials = rng.standard_normal((2000, 1, 1)) + rng.standard_normal((2000, 3, 1))
    >>> float(repeat_noise_ceiling(trials)[0].round(1))   # 1 / (1 + 1/3)
    0.8
    """
    counts = _repeat_counts(_check_repeats(repeats))
    return noise_ceiling(ncsnr_from_repeats(repeats), counts[counts > 0])


def split_half_reliability(
    repeats: np.ndarray,
    *,
    n_splits: int = 20,
    spearman_brown: bool = True,
    random_state: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Split-half reliability per voxel: correlation across images of the means of two random halves of repeats.

    Each split shuffles every image's measured repeats and averages the first ``n // 2`` against the rest;
    the correlations of ``n_splits`` splits are averaged, then Spearman-Brown corrected (``2r / (1 + r)``) to
    the reliability of the full average. Images with fewer than 2 repeats are left out.

    Parameters
    ----------
    repeats : array of shape (n_images, n_repeats, n_voxels)
        Single-trial responses; NaN where an image has fewer repeats.
    n_splits : int
        Random splits to average.
    spearman_brown : bool
        Correct the half-data correlation up to full data.
    random_state : int, Generator or None
        Seed of the splits.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> trials = rng.standard_normal((3000, 1, 1)) + rng.standard_normal((3000, 4, 1))
    >>> float(split_half_reliability(trials, random_state=0)[0].round(1))   # 1 / (1 + 1/4)
    0.8
    """
    repeats = _check_repeats(repeats)
    if n_splits < 1:
        raise ConfigError("n_splits must be >= 1", found=str(n_splits))
    counts = _repeat_counts(repeats)
    repeats, counts = repeats[counts >= 2], counts[counts >= 2]
    if len(counts) < 3:
        raise DataFormatError(
            "split-half reliability needs at least 3 images with >= 2 repeats", found=f"{len(counts)}"
        )
    rng = np.random.default_rng(random_state)
    measured = np.isfinite(repeats[:, :, 0])
    r = np.zeros(repeats.shape[2])
    for _ in range(n_splits):
        keys = np.where(measured, rng.random(measured.shape), np.inf)
        rank = np.argsort(np.argsort(keys, axis=1), axis=1)
        first = (rank < (counts // 2)[:, None])[:, :, None]
        second = (measured & ~first[:, :, 0])[:, :, None]
        r += pearson_r(_masked_mean(repeats, first), _masked_mean(repeats, second))
    r /= n_splits
    return 2 * r / (1 + r) if spearman_brown else r


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of the entries where ``mask`` is true (mask broadcasts over voxels)."""
    return np.where(mask, x, 0.0).sum(1) / mask.sum(1)


def normalized_score(r: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """Algonauts noise-normalised score per voxel, in percent: ``min(100, 100 * max(r, 0)² / nc)``.

    Parameters
    ----------
    r : array of shape (n_voxels,)
        Correlation between measured and predicted responses.
    nc : array of shape (n_voxels,)
        Noise ceiling as a fraction (0..1), e.g. from :func:`noise_ceiling`.

    Returns
    -------
    ndarray of float64
        NaN where the noise ceiling is 0, negative or NaN (no explainable variance: the voxel has no score).

    Examples
    --------
    >>> normalized_score([0.5, -0.2, 0.9, 0.3], [0.5, 0.5, 0.5, 0.0]).tolist()
    [50.0, 0.0, 100.0, nan]
    """
    r = np.asarray(r, dtype=np.float64)
    nc = np.asarray(nc, dtype=np.float64)
    if r.shape != nc.shape:
        raise DataFormatError(
            "r and the noise ceiling must have one value per voxel each", found=f"{r.shape} and {nc.shape}"
        )
    valid = nc > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.minimum(100.0 * np.clip(r, 0.0, None) ** 2 / nc, 100.0)
    return np.where(valid, score, np.nan)


def algonauts_score(r: np.ndarray, nc: np.ndarray) -> float:
    """Mean of :func:`normalized_score` over voxels with a positive noise ceiling (the Algonauts challenge score).

    Examples
    --------
    >>> algonauts_score([0.5, -0.2, 0.9, 0.3], [0.5, 0.5, 0.5, 0.0])
    50.0
    """
    score = normalized_score(r, nc)
    if not np.isfinite(score).any():
        raise DataFormatError(
            "no voxel has a positive noise ceiling", fix="check the ncsnr / noise_ceiling values"
        )
    return float(np.nanmean(score))


# --------------------------------------------------------------------------------------------- significance


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
    y_true, y_pred = _check_pair(y_true, y_pred)
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
