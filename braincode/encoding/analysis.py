"""The analysis API: cross-validate an encoder over voxels and say how every score was obtained.

:func:`cross_validate_voxels` takes an estimator first, as :func:`sklearn.model_selection.cross_validate` does,
and returns a :class:`VoxelCVResult`: the voxel table with one score column per statistic, a ``methods`` dict
that says how each column was obtained, the test-split predictions and the model refit on all training data.

How the cross-validated scores are obtained depends on the estimator and ``scoring``:

- a ridge encoder (:class:`~braincode.encoding.estimators.RidgeEncoder`, :class:`BandedRidgeEncoder`, or a
  pipeline ending in one) with ``scoring="same-folds"`` (default): one fit; each voxel's alpha is chosen by
  K-fold CV and ``r``/``r2`` are those of the out-of-fold predictions at that alpha, from the same fold
  decompositions (no extra cost; the selection among a few alphas makes them very slightly optimistic);
- ``scoring="nested"``: outer K-fold; the estimator (with its own inner CV) is fit on each outer training set
  and predicts the held-out fold; honest, and ``cv`` times the cost;
- any other estimator (e.g. a token readout): its own validation scores when it exposes a per-voxel
  ``validation_r_`` (e.g. early stopping on a validation split), otherwise out-of-fold predictions of K-fold CV.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold, LeaveOneOut, check_cv, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from braincode.encoding._descend import MARGIN, PATIENCE
from braincode.encoding.estimators import BandedRidgeEncoder, RidgeEncoder, _VoxelEncoder
from braincode.encoding.metrics import normalized_score, pearson_r, r2_score
from braincode.encoding.stats import fdr_correct, permutation_test
from braincode.errors import ConfigError, DataFormatError

#: Values of ``scoring`` in :func:`cross_validate_voxels`.
SCORINGS = ("same-folds", "nested")
#: Significance level of the ``significant`` column (Benjamini-Hochberg FDR).
FDR_ALPHA = 0.05


@dataclass
class VoxelCVResult:
    """What :func:`cross_validate_voxels` returns.

    Attributes
    ----------
    scores : DataFrame
        The voxel table plus ``r``, ``r2`` and, as available, ``alpha``, ``gamma_<space>``, ``pvalue``,
        ``qvalue``, ``significant``, ``normalized_score``, ``test_r``, ``unique_r2_<space>``, ``shared_r2``.
    methods : dict
        Score column -> one line saying how it was obtained (also written to ``summary.json``).
    test_predictions : ndarray of shape (n_test, n_voxels), float32, or None
        Predictions of ``model`` for ``X_test``.
    model : estimator
        The estimator fit on all training data.
    oof_predictions : ndarray of shape (n_samples, n_voxels), or None
        Out-of-fold predictions, when the protocol produced them.
    diagnostics : dict
        Fit diagnostics: voxels with constant responses, integer-valued responses, alphas at the grid's edges.
    """

    scores: pd.DataFrame
    methods: dict[str, str]
    test_predictions: np.ndarray | None
    model: BaseEstimator
    oof_predictions: np.ndarray | None = None
    diagnostics: dict = field(default_factory=dict)


def make_encoder(
    alphas: Sequence[float] | None = None,
    cv=5,
    device: str = "auto",
    *,
    spaces: Sequence[int] | None = None,
    n_iter: int = 100,
    random_state: int | None = 0,
    alpha_search: str = "descend",
) -> Pipeline:
    """The default encoder: feature standardisation, then a per-voxel-alpha ridge.

    With ``spaces`` (the column count of each feature space, in order) the ridge is a
    :class:`~braincode.encoding.estimators.BandedRidgeEncoder` (one regularisation per space), else a
    :class:`~braincode.encoding.estimators.RidgeEncoder` (with ``alpha_search``).

    Examples
    --------
    >>> make_encoder(cv=3, device="cpu").steps[-1][0]
    'ridgeencoder'
    >>> type(make_encoder(spaces=[4, 2], device="cpu")[-1]).__name__
    'BandedRidgeEncoder'
    """
    kwargs: dict = {"cv": cv, "device": device}
    if alphas is not None:
        kwargs["alphas"] = tuple(float(a) for a in alphas)
    if spaces is None:
        return make_pipeline(StandardScaler(), RidgeEncoder(alpha_search=alpha_search, **kwargs))
    ridge = BandedRidgeEncoder(spaces=list(spaces), n_iter=n_iter, random_state=random_state, **kwargs)
    return make_pipeline(StandardScaler(), ridge)


def _ridge_of(estimator: BaseEstimator) -> _VoxelEncoder | None:
    """The ridge encoder that ``estimator`` is or ends with (a pipeline's last step), else None."""
    last = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    return last if isinstance(last, _VoxelEncoder) else None


def _set_ridge(estimator: BaseEstimator, **params) -> BaseEstimator:
    """A clone of ``estimator`` with ``params`` set on its ridge step."""
    est = clone(estimator)
    _ridge_of(est).set_params(**params)
    return est


def _folds(cv, random_state: int):
    """An int means shuffled K-fold (seeded), "loo" leave-one-out; a splitter is used as given."""
    if isinstance(cv, str) and cv == "loo":
        return LeaveOneOut()
    if isinstance(cv, (int, np.integer)):
        if cv < 2:
            raise ConfigError("cv must be at least 2 folds", found=str(cv))
        return KFold(int(cv), shuffle=True, random_state=random_state)
    return check_cv(cv)


def _space_columns(spaces: Mapping[str, slice], n_features: int) -> dict[str, np.ndarray]:
    """Column indices of each named feature space; the spaces must not overlap and must cover every column."""
    cols = {name: np.arange(n_features)[sl] for name, sl in spaces.items()}
    flat = np.concatenate(list(cols.values())) if cols else np.array([], dtype=int)
    if len(cols) < 2 or len(flat) != n_features or len(np.unique(flat)) != n_features:
        raise ConfigError(
            "spaces must split the feature columns into at least two named parts",
            expected=f"a dict name -> slice covering each of the {n_features} columns once",
            found=f"{ {k: (int(v[0]), int(v[-1]) + 1) if len(v) else None for k, v in cols.items()} }",
        )
    return cols


def cross_validate_voxels(
    estimator: BaseEstimator | None,
    X: np.ndarray,
    Y: np.ndarray,
    voxels: pd.DataFrame,
    *,
    cv=5,
    scoring: str = "same-folds",
    X_test: np.ndarray | None = None,
    Y_test: np.ndarray | None = None,
    spaces: Mapping[str, slice] | None = None,
    n_permutations: int = 0,
    random_state: int = 0,
) -> VoxelCVResult:
    """Cross-validated per-voxel scores of ``estimator``, its refit on all of ``X``, and test predictions.

    Parameters
    ----------
    estimator : estimator or None
        A scikit-learn regressor with multi-output ``fit``/``predict``; ``None`` means :func:`make_encoder`.
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_voxels)
    voxels : DataFrame
        One row per voxel (the voxel table); a ``noise_ceiling`` column adds ``normalized_score``.
    cv : int, "loo" or scikit-learn splitter
        Folds (an int: shuffled K-fold seeded by ``random_state``). For a ridge with ``"same-folds"`` they also
        choose the alphas; with ``"nested"`` they are the outer folds. ``"loo"``: leave-one-out, which a
        :class:`RidgeEncoder` does from one decomposition of all samples (efficient); other estimators refit.
    scoring : {"same-folds", "nested"}
        See the module docstring.
    X_test, Y_test : ndarray, optional
        Test-split features (gives ``test_predictions``) and responses (gives ``test_r``).
    spaces : dict of str -> slice, optional
        Named feature spaces (column slices of ``X``) for variance partitioning: ``unique_r2_<name>`` is the
        cross-validated R^2 lost without that space, ``shared_r2`` what the full model explains beyond the
        unique parts. A banded ridge whose ``spaces`` is unset gets these spaces.
    n_permutations : int
        With > 0, a permutation p-value of each voxel's r, its FDR q-value and ``significant``.
    random_state : int

    Returns
    -------
    VoxelCVResult

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((120, 6))
    >>> Y = X[:, :2] @ rng.standard_normal((2, 3)) + 0.5 * rng.standard_normal((120, 3))
    >>> res = cross_validate_voxels(make_encoder(device="cpu"), X, Y, pd.DataFrame({"voxel": range(3)}))
    >>> res.scores["r"].round(2).tolist(), res.methods["r"].split(":")[0]
    ([0.73, 0.92, 0.84], 'cross-validated')
    """
    if scoring not in SCORINGS:
        raise ConfigError("unknown scoring", expected=f"one of {SCORINGS}", found=repr(scoring))
    X, Y = np.asarray(X), np.asarray(Y)
    if Y.ndim != 2 or X.ndim != 2 or len(X) != len(Y) or len(voxels) != Y.shape[1]:
        raise DataFormatError(
            "features, responses and voxel table do not match",
            expected="X (n_samples, n_features), Y (n_samples, n_voxels) and one voxel-table row per voxel",
            found=f"X {X.shape}, Y {Y.shape}, {len(voxels)} voxel rows",
        )
    estimator = make_encoder() if estimator is None else estimator
    folds = _folds(cv, random_state)
    cols = _space_columns(spaces, X.shape[1]) if spaces else None
    if cols and isinstance(_ridge_of(estimator), BandedRidgeEncoder) and _ridge_of(estimator).spaces is None:
        estimator = _set_ridge(estimator, spaces=[len(c) for c in cols.values()])
    fit = _cross_validate(estimator, X, Y, folds, scoring, keep_oof=n_permutations > 0)
    table = pd.DataFrame({"r": fit.r, "r2": fit.r2})
    methods = dict(fit.methods)
    ridge = _ridge_of(fit.model)
    if ridge is not None:
        table["alpha"] = ridge.best_alphas_
        methods["alpha"] = f"chosen per voxel by {_n_folds(ridge.cv)} CV on the training split ({ridge.scoring})"
        scored, n_alphas = ridge.alphas_scored_, len(np.atleast_1d(ridge.alphas))
        if scored.min() < n_alphas:
            methods["alpha"] += (
                f", going down the {n_alphas} alphas from the largest, each voxel stopping after {PATIENCE} in a row"
                f" scored over {MARGIN:g} below its best ({scored.mean():.1f} scored per voxel on average)"
            )
        if isinstance(ridge, BandedRidgeEncoder) and cols:
            for name, gamma in zip(cols, ridge.best_gammas_.T):
                table[f"gamma_{name}"] = gamma
                methods[f"gamma_{name}"] = "feature-space weight chosen with alpha (banded ridge)"
    constant = np.ptp(Y, axis=0) == 0
    table.loc[constant, ["r", "r2"]] = np.nan
    if n_permutations > 0:
        _add_permutations(table, methods, Y, fit.oof, n_permutations, random_state)
    if "noise_ceiling" in voxels:
        table["normalized_score"] = normalized_score(table["r"].to_numpy(), voxels["noise_ceiling"].to_numpy())
        methods["normalized_score"] = "100 r^2 / noise ceiling, clipped to [0, 100] (Algonauts), from r"
    if cols:
        _add_partition(table, methods, estimator, X, Y, folds, scoring, cols)
    predictions = None
    if X_test is not None:
        predictions = np.asarray(fit.model.predict(X_test), dtype=np.float32).reshape(len(X_test), -1)
        if Y_test is not None:
            table["test_r"] = pearson_r(np.asarray(Y_test).reshape(predictions.shape), predictions)
            methods["test_r"] = "test split: Pearson r of the model refit on all training data"
    scores = pd.concat([voxels.reset_index(drop=True), table], axis=1)
    diagnostics = fit_diagnostics(Y, ridge)
    return VoxelCVResult(scores, methods, predictions, fit.model, fit.oof, diagnostics)


@dataclass
class _Fit:
    r: np.ndarray
    r2: np.ndarray
    methods: dict[str, str]
    model: BaseEstimator
    oof: np.ndarray | None


def _n_folds(cv) -> str:
    if isinstance(cv, (str, LeaveOneOut)):
        return "leave-one-out"
    return f"{cv if isinstance(cv, (int, np.integer)) else getattr(cv, 'n_splits', 'K')}-fold"


def _from_oof(Y: np.ndarray, oof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    oof = oof.reshape(Y.shape)
    return pearson_r(Y, oof), r2_score(Y, oof)


def _cross_validate(estimator, X, Y, folds, scoring: str, keep_oof: bool) -> _Fit:
    """Fit ``estimator`` on all of (X, Y) and get per-voxel r and R^2 by the protocol of ``scoring``."""
    k = _n_folds(folds)
    if scoring == "nested":
        oof = cross_val_predict(clone(estimator), X, Y, cv=folds)
        model = clone(estimator).fit(X, Y)
        r, r2 = _from_oof(Y, oof)
        how = f"nested CV: out-of-fold predictions of {k} outer CV, each fit (and tuned) on its training part"
        return _Fit(r, r2, {"r": how, "r2": how}, model, oof.reshape(Y.shape))
    if _ridge_of(estimator) is not None:
        loo = isinstance(folds, LeaveOneOut)
        if loo and not isinstance(_ridge_of(estimator), RidgeEncoder):
            raise ConfigError("leave-one-out is available for RidgeEncoder only", found=type(estimator).__name__,
                              fix="use cv=K folds with banded ridge")
        model = _set_ridge(estimator, cv="loo" if loo else folds, keep_oof=keep_oof).fit(X, Y)
        ridge = _ridge_of(model)
        how = f"cross-validated: out-of-fold predictions at the alpha chosen on the same {k} splits"
        return _Fit(ridge.cv_r_, ridge.cv_r2_, {"r": how, "r2": how}, model, ridge.oof_predictions_)
    model = clone(estimator).fit(X, Y)
    last = model[-1] if isinstance(model, Pipeline) else model
    validation_r = getattr(last, "validation_r_", None)
    if validation_r is not None and not keep_oof:
        r = np.asarray(validation_r, dtype=np.float64).ravel()
        return _Fit(r, np.full_like(r, np.nan), {"r": "validation split (early stopping)",
                                                 "r2": "not computed (validation split only gives r)"}, model, None)
    oof = cross_val_predict(clone(estimator), X, Y, cv=folds)
    r, r2 = _from_oof(Y, oof)
    how = f"cross-validated: out-of-fold predictions of {k} CV"
    return _Fit(r, r2, {"r": how, "r2": how}, model, oof.reshape(Y.shape))


def _add_permutations(table, methods, Y, oof, n_permutations: int, random_state: int) -> None:
    result = permutation_test(Y, oof, n_permutations=n_permutations, random_state=random_state)
    table["pvalue"] = result.pvalue
    table["qvalue"], table["significant"] = fdr_correct(result.pvalue, alpha=FDR_ALPHA)
    methods["pvalue"] = f"permutation test of r: {n_permutations} row permutations of the out-of-fold predictions"
    methods["qvalue"] = "Benjamini-Hochberg FDR-adjusted pvalue"
    methods["significant"] = f"qvalue <= {FDR_ALPHA}"


def _add_partition(table, methods, estimator, X, Y, folds, scoring: str, cols: dict[str, np.ndarray]) -> None:
    """Variance partitioning: refit without each space; unique R^2 = full R^2 - R^2 without it."""
    full = table["r2"].to_numpy()
    unique_sum = np.zeros_like(full)
    for name in cols:
        rest = [c for other, c in cols.items() if other != name]
        sub = estimator
        if isinstance(_ridge_of(estimator), BandedRidgeEncoder):
            sub = _set_ridge(estimator, spaces=[len(c) for c in rest])
        without = _cross_validate(sub, X[:, np.concatenate(rest)], Y, folds, scoring, keep_oof=False).r2
        table[f"unique_r2_{name}"] = full - without
        unique_sum += full - without
        methods[f"unique_r2_{name}"] = f"r2 minus the r2 of the same model without {name!r} (variance partitioning)"
    table["shared_r2"] = full - unique_sum
    methods["shared_r2"] = "r2 minus the sum of the unique r2 of every space (variance partitioning)"


def fit_diagnostics(Y: np.ndarray, ridge: _VoxelEncoder | None = None) -> dict:
    """Warnings worth reading before the scores.

    Returns
    -------
    dict
        ``constant_voxels`` (count; their scores are NaN and left out of ROI means), ``integer_valued_responses``
        (True when the responses of the first 256 samples are all whole numbers, e.g. unscaled int16 betas: scale
        them, or check that they were read as intended), and for a ridge the shares of
        voxels whose alpha is the smallest or largest of the grid (``alpha_at_lower_edge``,
        ``alpha_at_upper_edge``: a share near 1 means the grid should extend further).

    Examples
    --------
    >>> fit_diagnostics(np.array([[1.0, 2.0], [1.0, 3.0]]))
    {'constant_voxels': 1, 'integer_valued_responses': True}
    """
    Y = np.asarray(Y)
    rows = Y[: min(len(Y), 256)]
    out: dict = {
        "constant_voxels": int((np.ptp(Y, axis=0) == 0).sum()),
        "integer_valued_responses": bool(np.issubdtype(Y.dtype, np.integer) or np.all(rows == np.round(rows))),
    }
    if ridge is not None and hasattr(ridge, "best_alphas_"):
        grid = np.asarray(ridge.alphas, dtype=float)
        chosen = np.asarray(ridge.best_alphas_)
        out["alpha_at_lower_edge"] = float(np.isclose(chosen, grid.min()).mean()) if len(grid) > 1 else 0.0
        out["alpha_at_upper_edge"] = float(np.isclose(chosen, grid.max()).mean()) if len(grid) > 1 else 0.0
    return out
