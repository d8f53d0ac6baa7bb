"""RidgeEncoder: equal to scikit-learn Ridge at the chosen alpha, scikit-learn API checks, clear errors."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.utils.estimator_checks import check_estimator

from braincode.encoding import BandedRidgeEncoder, RidgeEncoder
from braincode.errors import ConfigError, DataFormatError, NotFittedError

#: predict returns float32 by design (memory at 300k voxels); scikit-learn wants float64 for float64 input.
EXPECTED_FAILED = {"check_regressor_multioutput": "predict returns float32 by design"}


def _data(n=200, p=12, v=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + 2.0
    Y = X @ rng.standard_normal((p, v)) + 3.0 * rng.standard_normal((n, v)) + 5.0
    return X, Y


def test_equals_sklearn_ridge_at_fixed_alpha():
    X, Y = _data()
    model = RidgeEncoder(alphas=[7.0], device="cpu").fit(X, Y)
    ref = Ridge(alpha=7.0).fit(X, Y)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-4, atol=1e-4)
    assert model.predict(X).dtype == np.float32


def test_per_voxel_alpha_matches_sklearn_ridge_per_voxel():
    X, Y = _data(p=40)
    Y[:, :3] = X[:, :3] @ np.ones((3, 3)) * 0.01 + np.random.default_rng(1).standard_normal((200, 3))
    model = RidgeEncoder(alphas=np.logspace(-2, 5, 8), device="cpu").fit(X, Y)
    assert len(np.unique(model.best_alphas_)) > 1
    for j, alpha in enumerate(model.best_alphas_):
        ref = Ridge(alpha=alpha).fit(X, Y[:, j])
        np.testing.assert_allclose(model.coef_[j], ref.coef_, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scoring", ["r2", "pearson"])
def test_chosen_alphas_match_brute_force_cv(scoring):
    from braincode.encoding.metrics import pearson_r, r2_score

    X, Y = _data(n=120, p=30, v=8, seed=3)
    alphas = np.logspace(-1, 4, 6)
    cv = KFold(4, shuffle=True, random_state=0)
    metric = r2_score if scoring == "r2" else pearson_r
    scores = np.zeros((len(alphas), Y.shape[1]))
    for train, val in cv.split(X):
        for i, a in enumerate(alphas):
            scores[i] += metric(Y[val], Ridge(alpha=a).fit(X[train], Y[train]).predict(X[val]))
    scores /= 4
    model = RidgeEncoder(alphas=alphas, cv=cv, scoring=scoring, device="cpu").fit(X, Y)
    np.testing.assert_array_equal(model.best_alphas_, alphas[scores.argmax(0)])
    np.testing.assert_allclose(model.cv_scores_, scores.max(0), atol=1e-5)


@pytest.mark.parametrize("estimator", [RidgeEncoder(device="cpu"), BandedRidgeEncoder(device="cpu")])
def test_check_estimator(estimator):
    check_estimator(estimator, expected_failed_checks=EXPECTED_FAILED)


def test_banded_encoder_spaces_and_clear_errors():
    rng = np.random.default_rng(0)
    Xa, Xb = rng.standard_normal((150, 6)), rng.standard_normal((150, 4))
    Y = np.c_[Xa @ rng.standard_normal((6, 3)), Xb @ rng.standard_normal((4, 3))] + rng.standard_normal(
        (150, 6)
    )
    model = BandedRidgeEncoder(spaces=[6, 4], n_iter=12, random_state=0, device="cpu").fit(np.c_[Xa, Xb], Y)
    assert model.best_gammas_.shape == (6, 2)
    np.testing.assert_array_equal(model.best_gammas_.argmax(1), [0, 0, 0, 1, 1, 1])
    assert model.predict(np.c_[Xa, Xb]).shape == Y.shape
    with pytest.raises(ConfigError, match="add up"):
        BandedRidgeEncoder(spaces=[6, 5], device="cpu").fit(np.c_[Xa, Xb], Y)


def test_cross_val_predict_and_torch_inputs():
    X, Y = _data()
    held_out = cross_val_predict(RidgeEncoder(device="cpu"), X, Y, cv=3)
    assert held_out.shape == Y.shape
    model = RidgeEncoder(device="cpu").fit(torch.from_numpy(X), torch.from_numpy(Y))
    np.testing.assert_allclose(
        model.predict(torch.from_numpy(X)),
        RidgeEncoder(device="cpu").fit(X, Y).predict(X),
        rtol=1e-5,
        atol=1e-5,
    )
    per_voxel = model.score_voxels(X, Y)
    assert per_voxel.shape == (Y.shape[1],)
    assert model.score(X, Y) == pytest.approx(per_voxel.mean())


def test_errors_are_clear():
    X, Y = _data()
    with pytest.raises(NotFittedError, match="fit"):
        RidgeEncoder().predict(X)
    with pytest.raises(ConfigError, match="alphas"):
        RidgeEncoder(alphas=[-1.0], device="cpu").fit(X, Y)
    with pytest.raises(ConfigError, match="score"):
        RidgeEncoder(scoring="mse", device="cpu").fit(X, Y)
    with pytest.raises(ConfigError, match="n_samples=3"):
        RidgeEncoder(cv=5, device="cpu").fit(X[:3], Y[:3])
    with pytest.raises(DataFormatError, match="samples"):
        RidgeEncoder(device="cpu").fit(torch.from_numpy(X), torch.from_numpy(Y[:-1]))
