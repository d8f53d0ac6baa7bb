"""Voxel-wise ridge encoders with the scikit-learn API, thin wrappers around :mod:`braincode.encoding.solvers`.

``score(X, Y)`` returns one float, the mean over voxels of the per-voxel score (scikit-learn's regressor
contract; for ``scoring="r2"`` it equals :meth:`sklearn.base.RegressorMixin.score`); ``score_voxels(X, Y)``
returns the per-voxel values. ``coef_`` follows scikit-learn: shape (n_voxels, n_features).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import sklearn.exceptions
import torch
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.model_selection import check_cv
from sklearn.utils.validation import validate_data

from braincode.devices import resolve_device
from braincode.encoding.metrics import pearson_r, r2_score
from braincode.encoding.solvers import SCORES, Splits, as_tensor, banded_ridge_cv, ridge_cv
from braincode.errors import ConfigError, DataFormatError, NotFittedError

logger = logging.getLogger(__name__)

#: Default alpha grid: 10 values from 1e-2 to 1e6.
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 10))


class EncoderNotFittedError(NotFittedError, sklearn.exceptions.NotFittedError):
    """An encoder was used before ``fit`` (also a scikit-learn ``NotFittedError``)."""


def _checked_tensor(data: torch.Tensor, name: str, ndims: tuple[int, ...]) -> torch.Tensor:
    """A real, finite tensor with one of ``ndims`` dimensions."""
    data = data.detach()
    if data.ndim not in ndims or data.is_complex() or data.dtype == torch.bool:
        raise DataFormatError(
            f"{name} must be a real {' or '.join(f'{d}-D' for d in ndims)} tensor",
            expected="shape (n_samples, n_columns)",
            found=f"shape {tuple(data.shape)}, dtype {data.dtype}",
        )
    if data.is_floating_point() and not bool(torch.isfinite(data).all()):
        raise DataFormatError(f"{name} contains NaN or infinity", fix="impute or drop those values")
    return data


def _validated(estimator: BaseEstimator, X, Y=None, *, reset: bool):
    """X (and Y) as float arrays/tensors; numpy goes through scikit-learn's checks, torch through ours."""
    if torch.is_tensor(X) or torch.is_tensor(Y):
        X = _checked_tensor(torch.as_tensor(X), "X", (2,))
        if reset:
            estimator.n_features_in_ = X.shape[1]
        elif X.shape[1] != estimator.n_features_in_:
            raise DataFormatError(
                "X has a different number of features than during fit",
                expected=f"{estimator.n_features_in_} features",
                found=f"{X.shape[1]}",
            )
        if Y is None:
            return X
        Y = _checked_tensor(torch.as_tensor(Y), "Y", (1, 2))
        if Y.shape[0] != X.shape[0]:
            raise DataFormatError(
                "X and Y have different numbers of samples", found=f"{X.shape[0]} and {Y.shape[0]}"
            )
        return X, Y
    if Y is None:
        return validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64])
    return validate_data(
        estimator, X, Y, reset=reset, multi_output=True, y_numeric=True, dtype=[np.float32, np.float64]
    )


class _VoxelEncoder(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Shared predict / score / checks of the ridge encoders."""

    def _splits(self, n_samples: int) -> Splits | str:
        if isinstance(self.cv, str) and self.cv == "loo" and isinstance(self, RidgeEncoder):
            return "loo"
        try:
            cv = check_cv(self.cv)
            return list(cv.split(np.zeros((n_samples, 1))))
        except ValueError as err:
            raise ConfigError(
                "cannot split the samples for cross-validation",
                expected="cv an int >= 2 or a scikit-learn splitter, and at least as many samples as folds",
                found=f"cv={self.cv!r} with n_samples={n_samples} ({err})",
                fix="use fewer folds or more samples",
            ) from err

    def _fit_inputs(self, X, y):
        """Checked ``X``, 2-D ``Y``, and whether ``y`` was 1-D."""
        if self.scoring not in SCORES:
            raise ConfigError("unknown score", expected=f"one of {SCORES}", found=repr(self.scoring))
        if y is None:
            raise ConfigError(
                f"{type(self).__name__} requires y to be passed, but the target y is None",
                fix="call fit(X, Y) with the responses Y",
            )
        X, y = _validated(self, X, y, reset=True)
        ravel = y.ndim == 1
        return X, (y[:, None] if ravel else y), ravel

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise EncoderNotFittedError(
                f"this {type(self).__name__} is not fitted yet", fix="call fit(X, Y) before predict or score"
            )

    def _store(self, res, ravel: bool) -> None:
        """Keep a solver result: weights, chosen alphas and the cross-validated scores at those alphas."""
        coef_np = res.coef.numpy().T  # (n_voxels, n_features), contiguous: the solvers fill a transposed view
        self.coef_ = coef_np[0] if ravel else coef_np
        self.intercept_ = float(res.intercept[0]) if ravel else res.intercept.numpy()
        self._ravel = ravel
        self.best_alphas_ = res.best_alphas.numpy()
        self.cv_scores_ = res.cv_scores.numpy()
        self.cv_r_ = res.cv_r.numpy()
        self.cv_r2_ = res.cv_r2.numpy()
        self.oof_predictions_ = None if res.oof is None else res.oof.numpy()
        self.alphas_scored_ = res.alphas_scored.numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted responses, float32 numpy of shape (n_samples, n_voxels) (1-D if fit on 1-D y).

        Computed on the estimator's device in float32.
        """
        self._check_fitted()
        X = _validated(self, X, reset=False)
        dev = resolve_device(self.device)
        W = torch.as_tensor(np.atleast_2d(self.coef_)).to(dev)
        b = torch.as_tensor(np.atleast_1d(self.intercept_), dtype=torch.float32).to(dev)
        pred = torch.addmm(b, as_tensor(X).to(dev, torch.float32), W.T).cpu().numpy()
        return pred[:, 0] if self._ravel else pred

    def score_voxels(self, X, Y) -> np.ndarray:
        """Per-voxel score (``self.scoring``: R^2 or Pearson r) of the predictions for ``X`` against ``Y``.

        Returns
        -------
        ndarray of shape (n_voxels,), float64 (a 1-element array when fit on 1-D y)
        """
        Y = Y.detach().cpu().numpy() if torch.is_tensor(Y) else np.asarray(Y)
        pred = self.predict(X)
        Y2 = Y.reshape(len(Y), -1)
        metric = r2_score if self.scoring == "r2" else pearson_r
        return metric(Y2, pred.reshape(len(pred), -1))

    def score(self, X, y, sample_weight=None) -> float:
        """Mean over voxels of :meth:`score_voxels` (a float, as scikit-learn expects from regressors)."""
        if sample_weight is not None:
            raise ConfigError("sample weights are not supported", expected="sample_weight=None")
        return float(np.mean(self.score_voxels(X, y)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class RidgeEncoder(_VoxelEncoder):
    """Ridge regression with one alpha per voxel chosen by K-fold cross-validation.

    For each voxel, the alpha with the best mean validation score (ties: the larger alpha) is kept and the
    model is refit on all samples with it. Equal to :class:`sklearn.linear_model.Ridge` at that alpha.

    Parameters
    ----------
    alphas : sequence of float
        Candidate regularisations (default: 10 values from 1e-2 to 1e6, log-spaced).
    cv : int or scikit-learn splitter
        Folds for choosing alphas; an int means ``KFold(cv)`` (no shuffling); ``"loo"`` efficient leave-one-out
        (one decomposition of all samples; :func:`~braincode.encoding.solvers.ridge_cv`).
    scoring : {"r2", "pearson"}
        Score that selects alphas, and that ``score``/``score_voxels`` report. (Named ``scoring`` as in
        scikit-learn's ``RidgeCV``: a parameter called ``score`` would hide the ``score`` method.)
    fit_intercept : bool
        Centre X and Y (per fold and for the refit), like scikit-learn's ``Ridge``.
    device : {"auto", "cpu", "cuda"}
    voxel_batch : int, optional
        Voxels solved at once; by default as many as fit in half the free memory.
    keep_oof : bool
        Keep the out-of-fold predictions (``oof_predictions_``, n_samples x n_voxels float32), e.g. for a
        permutation test; ``cv`` must then partition the samples (K-fold).
    copy_X : bool
        ``False``: a writable float32 ``X`` may be centred in place rather than copied (K-fold CV), as in
        scikit-learn's ``Ridge``.
    alpha_search : {"descend", "grid"}
        With more features than samples and K-fold ``cv``: go down the alphas from the largest, each voxel
        stopping after two alphas in a row clearly below its best (the grid's choice wherever its CV curve has one
        peak; 5.7 of 10 alphas scored per vertex at the Algonauts size), or score every alpha for every voxel
        (:func:`~braincode.encoding.solvers.ridge_cv`).

    Attributes
    ----------
    coef_ : ndarray of shape (n_voxels, n_features), float32
    intercept_ : ndarray of shape (n_voxels,), float32
    best_alphas_ : ndarray of shape (n_voxels,)
    cv_scores_ : ndarray of shape (n_voxels,)
        Mean CV score of each voxel's chosen alpha.
    cv_r_, cv_r2_ : ndarray of shape (n_voxels,), float64
        Pearson r and R^2 of the out-of-fold predictions at each voxel's chosen alpha, over all samples: the
        same folds chose the alpha (no extra fit). NaN for a voxel with constant responses.
    oof_predictions_ : ndarray of shape (n_samples, n_voxels) or None
        Those out-of-fold predictions (with ``keep_oof=True``).
    alphas_scored_ : ndarray of shape (n_voxels,), int
        How many alphas were scored for each voxel (fewer than all only with ``alpha_search="descend"``).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((100, 5))
    >>> Y = X @ rng.standard_normal((5, 3)) + 0.1 * rng.standard_normal((100, 3))
    >>> model = RidgeEncoder(alphas=[0.1, 1.0, 10.0], device="cpu").fit(X, Y)
    >>> model.predict(X).dtype, model.best_alphas_.shape, round(model.score(X, Y), 2)
    (dtype('float32'), (3,), 1.0)
    """

    def __init__(
        self,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        cv=5,
        scoring: str = "r2",
        fit_intercept: bool = True,
        device: str = "auto",
        voxel_batch: int | None = None,
        keep_oof: bool = False,
        copy_X: bool = True,
        alpha_search: str = "descend",
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.scoring = scoring
        self.fit_intercept = fit_intercept
        self.device = device
        self.voxel_batch = voxel_batch
        self.keep_oof = keep_oof
        self.copy_X = copy_X
        self.alpha_search = alpha_search

    def fit(self, X, y) -> RidgeEncoder:
        """Choose each voxel's alpha by cross-validation on ``(X, y)``, then refit on all of it."""
        X, Y, ravel = self._fit_inputs(X, y)
        res = ridge_cv(
            X,
            Y,
            self.alphas,
            self._splits(X.shape[0]),
            score=self.scoring,
            fit_intercept=self.fit_intercept,
            device=self.device,
            voxel_batch=self.voxel_batch,
            keep_oof=self.keep_oof,
            copy_X=self.copy_X,
            alpha_search=self.alpha_search,
        )
        self._store(res, ravel)
        return self


class BandedRidgeEncoder(_VoxelEncoder):
    """Banded ridge: one regularisation per feature space, chosen per voxel by K-fold cross-validation.

    The columns of ``X`` are consecutive feature spaces (e.g. two layers, or a vision and a text model) of the
    sizes given in ``spaces``. Space k is scaled by ``sqrt(gamma_k)``, ``gamma`` on the simplex, so its penalty
    is ``alpha / gamma_k``; each voxel keeps the (gamma, alpha) with the best mean CV score among the candidates
    of :func:`braincode.encoding.solvers.simplex_candidates` (uniform, each space alone, Dirichlet samples).

    Parameters
    ----------
    spaces : sequence of int, optional
        Number of columns of each feature space, in order; they must add up to ``n_features``. ``None``: one
        space (then this is :class:`RidgeEncoder`).
    alphas, cv, scoring, fit_intercept, device, voxel_batch, keep_oof
        As in :class:`RidgeEncoder`.
    n_iter : int
        Number of candidate feature-space weights.
    concentration : sequence of float
        Dirichlet concentrations of the random candidates, cycled.
    random_state : int, optional
        Seed of the random candidates.

    Attributes
    ----------
    coef_ : ndarray of shape (n_voxels, n_features), float32
        Weights on the unscaled features.
    intercept_ : ndarray of shape (n_voxels,), float32
    best_alphas_ : ndarray of shape (n_voxels,)
    best_gammas_ : ndarray of shape (n_voxels, n_spaces)
        Each voxel's feature-space weights (rows sum to 1).
    cv_scores_, cv_r_, cv_r2_, oof_predictions_
        As in :class:`RidgeEncoder` (at each voxel's chosen feature-space weights and alpha).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xa, Xb = rng.standard_normal((120, 4)), rng.standard_normal((120, 3))
    >>> Y = np.c_[Xa.sum(1), Xb.sum(1)] + 0.1 * rng.standard_normal((120, 2))
    >>> model = BandedRidgeEncoder(spaces=[4, 3], n_iter=10, random_state=0, device="cpu")
    >>> model.fit(np.c_[Xa, Xb], Y).best_gammas_.argmax(1).tolist()
    [0, 1]
    """

    def __init__(
        self,
        spaces: Sequence[int] | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        cv=5,
        n_iter: int = 100,
        concentration: Sequence[float] = (0.1, 1.0),
        scoring: str = "r2",
        fit_intercept: bool = True,
        device: str = "auto",
        voxel_batch: int | None = None,
        random_state: int | None = None,
        keep_oof: bool = False,
    ) -> None:
        self.spaces = spaces
        self.alphas = alphas
        self.cv = cv
        self.n_iter = n_iter
        self.concentration = concentration
        self.scoring = scoring
        self.fit_intercept = fit_intercept
        self.device = device
        self.voxel_batch = voxel_batch
        self.random_state = random_state
        self.keep_oof = keep_oof

    def _space_sizes(self, n_features: int) -> list[int]:
        sizes = [n_features] if self.spaces is None else [int(s) for s in self.spaces]
        if any(s < 1 for s in sizes) or sum(sizes) != n_features:
            raise ConfigError(
                "feature-space sizes do not add up to the number of features",
                expected=f"positive sizes summing to {n_features}",
                found=f"spaces={list(self.spaces)}",
                fix="give the number of columns of each feature space, in column order",
            )
        return sizes

    def fit(self, X, y) -> BandedRidgeEncoder:
        """Choose each voxel's feature-space weights and alpha by cross-validation, then refit."""
        X, Y, ravel = self._fit_inputs(X, y)
        Xt = as_tensor(X)
        res = banded_ridge_cv(
            list(torch.split(Xt, self._space_sizes(Xt.shape[1]), 1)),
            Y,
            self.alphas,
            self._splits(X.shape[0]),
            n_iter=self.n_iter,
            concentration=self.concentration,
            random_state=self.random_state,
            score=self.scoring,
            fit_intercept=self.fit_intercept,
            device=self.device,
            voxel_batch=self.voxel_batch,
            keep_oof=self.keep_oof,
        )
        self._store(res, ravel)
        self.best_gammas_ = res.best_gammas.numpy().T
        return self
