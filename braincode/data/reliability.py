"""Reliability of measured responses: the noise ceiling from NSD's noise-ceiling SNR (``ncsnr``).

The NSD and Algonauts loaders record a ``noise_ceiling`` column in the voxel table with :func:`noise_ceiling`;
the encoding layer's metrics (``braincode.encoding.metrics``) estimate ncsnr from repeated trials and re-export
this formula.
"""

from __future__ import annotations

import numpy as np

from braincode.errors import ConfigError


def _inverse_n(n_trials: float | np.ndarray) -> float:
    """1/n for one repeat count, or the mean of 1/n_i over per-image counts (Algonauts' mixed-repeat rule)."""
    counts = np.asarray(n_trials, dtype=np.float64).ravel()
    if counts.size == 0 or not np.all(np.isfinite(counts)) or np.any(counts < 1):
        raise ConfigError(
            "n_trials must be a repeat count >= 1 or one count >= 1 per image",
            expected="a number like 3, or an array like [3, 3, 2, 1, ...]",
            found=repr(n_trials) if counts.size < 10 else f"{counts.size} counts, min {np.nanmin(counts)}",
            fix="count how many trials each test image was shown (images never shown do not belong here)",
        )
    return float(np.mean(1.0 / counts))


def noise_ceiling(ncsnr: np.ndarray, n_trials: float | np.ndarray) -> np.ndarray:
    """Noise ceiling (fraction of variance, 0..1) from NSD's noise-ceiling SNR: ``ncsnr² / (ncsnr² + 1/n)``.

    Parameters
    ----------
    ncsnr : array of shape (n_voxels,)
        Noise-ceiling signal-to-noise ratio per voxel (NSD's ``ncsnr`` maps). NaN stays NaN.
    n_trials : int or array of int
        Trials averaged per image. With per-image counts (mixed repeats), ``1/n`` is
        ``(A/3 + B/2 + C/1) / (A + B + C)`` where A, B, C images have 3, 2, 1 repeats, i.e. the mean of ``1/n_i``.

    Returns
    -------
    ndarray of float64, same shape as ``ncsnr``
        Multiply by 100 for NSD's "percent of variance explainable".

    Examples
    --------
    >>> noise_ceiling([1.0, 0.0], 3).round(4).tolist()
    [0.75, 0.0]
    >>> float(noise_ceiling([1.0], [3, 3, 2, 1])[0].round(4))   # 1/n = (2/3 + 1/2 + 1) / 4
    0.6486
    """
    snr2 = np.asarray(ncsnr, dtype=np.float64) ** 2
    return snr2 / (snr2 + _inverse_n(n_trials))


