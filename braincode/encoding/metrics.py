"""Per-voxel scores, computed in float64 and vectorised over voxels.

- scores: :func:`pearson_r`, :func:`r2_score`;
- noise ceilings: :func:`~braincode.data.reliability.noise_ceiling` (NSD's ncsnr formula, mixed repeat counts as
  Algonauts; it lives in the data layer and is re-exported here), :func:`ncsnr_from_repeats`,
  :func:`repeat_noise_ceiling`, :func:`split_half_reliability`;
- the Algonauts noise-normalised score: :func:`normalized_score` (per voxel), :func:`algonauts_score` (mean).

Their statistics (permutation tests, FDR, ROI bootstrap CIs, the score table) are in
:mod:`braincode.encoding.stats`.
"""

from __future__ import annotations

import numpy as np

from braincode.data.reliability import noise_ceiling
from braincode.errors import ConfigError, DataFormatError


def check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measured and predicted responses as float64 arrays of one shape (n_samples, n_voxels), or a clear error.

    Examples
    --------
    >>> check_pair([[1, 2]], [[1.0, 2.5]])[1].dtype
    dtype('float64')
    """
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
    y_true, y_pred = check_pair(y_true, y_pred)
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
    y_true, y_pred = check_pair(y_true, y_pred)
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
