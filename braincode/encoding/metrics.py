"""Per-voxel scores: Pearson r and coefficient of determination, computed in float64."""

from __future__ import annotations

import numpy as np

from braincode.errors import DataFormatError


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
