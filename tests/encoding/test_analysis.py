"""The analysis API against direct float64 recomputations of each protocol and data with a known answer."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_predict

from braincode.data import load_algonauts
from braincode.data.synthetic import make_synthetic
from braincode.encoding import BandedRidgeEncoder, RidgeEncoder
from braincode.encoding.analysis import cross_validate_voxels, fit_diagnostics, make_encoder
from braincode.encoding.analysis_outputs import write_result
from braincode.encoding.metrics import pearson_r, r2_score
from braincode.errors import ConfigError, DataFormatError

ALPHAS = np.logspace(-2, 4, 7)


def data(n=150, p=8, v=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    Y = X @ rng.standard_normal((p, v)) * np.linspace(0.1, 2, v) + rng.standard_normal((n, v)) + 2.0
    return X, Y, pd.DataFrame({"hemisphere": ["lh"] * v, "vertex": np.arange(v)})


def test_same_folds_r_equals_direct_float64_recomputation():
    X, Y, vox = data()
    Y[:, 1] = 3.0  # constant voxel: NaN score, counted in the diagnostics
    res = cross_validate_voxels(RidgeEncoder(alphas=ALPHAS, device="cpu"), X, Y, vox, cv=5, random_state=1)
    folds = KFold(5, shuffle=True, random_state=1)
    oof = np.zeros_like(Y)
    for j, alpha in enumerate(res.scores["alpha"]):
        oof[:, j] = cross_val_predict(Ridge(alpha=alpha), X, Y[:, j], cv=folds)
    live = np.arange(5) != 1
    np.testing.assert_allclose(res.scores["r"].to_numpy()[live], pearson_r(Y, oof)[live], atol=1e-6)
    np.testing.assert_allclose(res.scores["r2"].to_numpy()[live], r2_score(Y, oof)[live], atol=1e-6)
    assert res.scores[["r", "r2"]].iloc[1].isna().all()
    assert res.methods["r"].startswith("cross-validated: out-of-fold predictions at the alpha chosen on the same")
    assert res.diagnostics["constant_voxels"] == 1 and not res.diagnostics["integer_valued_responses"]
    assert 0 <= res.diagnostics["alpha_at_upper_edge"] <= 1


def test_nested_scoring_is_an_outer_cross_val_predict():
    X, Y, vox = data(seed=2)
    est = RidgeEncoder(alphas=ALPHAS, device="cpu")
    res = cross_validate_voxels(est, X, Y, vox, cv=4, scoring="nested", random_state=0)
    oof = cross_val_predict(est, X, Y, cv=KFold(4, shuffle=True, random_state=0))
    np.testing.assert_allclose(res.scores["r"], pearson_r(Y, oof), atol=1e-6)
    np.testing.assert_allclose(res.oof_predictions, oof, atol=1e-5)
    assert res.methods["r"].startswith("nested CV")


def test_test_split_permutations_and_noise_ceiling():
    X, Y, vox = data(n=200, seed=3)
    vox["noise_ceiling"] = 0.9
    Xt, Yt, _ = data(n=50, seed=3)
    res = cross_validate_voxels(make_encoder(ALPHAS, device="cpu"), X, Y, vox, X_test=Xt, Y_test=Yt,
                                n_permutations=99)
    assert res.test_predictions.shape == Yt.shape and res.test_predictions.dtype == np.float32
    np.testing.assert_allclose(res.scores["test_r"], pearson_r(Yt, res.model.predict(Xt)), atol=1e-6)
    assert {"pvalue", "qvalue", "significant", "normalized_score"} <= set(res.scores)
    assert res.scores["significant"].iloc[-1]  # the strongest voxel
    assert set(res.methods) >= {"r", "r2", "alpha", "pvalue", "qvalue", "significant", "test_r"}
    assert res.oof_predictions.shape == Y.shape


class ValidatedRegressor(RegressorMixin, BaseEstimator):
    """A regressor that reports its own per-voxel validation r (as early-stopping readouts do)."""

    def fit(self, X, Y):
        half = len(X) // 2
        self.model_ = Ridge(alpha=1.0).fit(X[:half], Y[:half])
        self.validation_r_ = pearson_r(Y[half:], self.model_.predict(X[half:]))
        return self

    def predict(self, X):
        return self.model_.predict(X)


def test_other_estimators_use_their_validation_scores_or_k_fold():
    X, Y, vox = data(seed=4)
    res = cross_validate_voxels(ValidatedRegressor(), X, Y, vox)
    np.testing.assert_allclose(res.scores["r"], res.model.validation_r_)
    assert res.methods["r"] == "validation split (early stopping)" and "alpha" not in res.scores
    plain = cross_validate_voxels(Ridge(alpha=1.0), X, Y, vox, cv=3)
    oof = cross_val_predict(Ridge(alpha=1.0), X, Y, cv=KFold(3, shuffle=True, random_state=0))
    np.testing.assert_allclose(plain.scores["r"], pearson_r(Y, oof))


def test_variance_partitioning_finds_which_space_drives_which_voxel():
    rng = np.random.default_rng(5)
    Xa, Xb = rng.standard_normal((240, 4)), rng.standard_normal((240, 3))
    Y = np.c_[Xa.sum(1), Xb.sum(1), Xa.sum(1) + Xb.sum(1)] + 0.5 * rng.standard_normal((240, 3))
    vox = pd.DataFrame({"hemisphere": ["lh"] * 3, "vertex": range(3)})
    spaces = {"vision": slice(0, 4), "text": slice(4, 7)}
    est = BandedRidgeEncoder(alphas=ALPHAS, n_iter=8, random_state=0, device="cpu")
    res = cross_validate_voxels(est, np.c_[Xa, Xb], Y, vox, spaces=spaces)
    s = res.scores
    assert s["unique_r2_vision"][0] > 0.5 > abs(s["unique_r2_text"][0])
    assert s["unique_r2_text"][1] > 0.5 > abs(s["unique_r2_vision"][1])
    assert min(s["unique_r2_vision"][2], s["unique_r2_text"][2]) > 0.2
    np.testing.assert_allclose(s["shared_r2"], s["r2"] - s["unique_r2_vision"] - s["unique_r2_text"])
    assert s["gamma_vision"][0] > 0.5 and s["gamma_text"][1] > 0.5
    assert "variance partitioning" in res.methods["shared_r2"]


def test_bad_inputs_raise_clear_errors():
    X, Y, vox = data()
    with pytest.raises(ConfigError, match="unknown scoring"):
        cross_validate_voxels(None, X, Y, vox, scoring="loo")
    with pytest.raises(DataFormatError, match="do not match"):
        cross_validate_voxels(None, X, Y, vox.iloc[:2])
    with pytest.raises(ConfigError, match="spaces"):
        cross_validate_voxels(None, X, Y, vox, spaces={"a": slice(0, 3), "b": slice(2, 8)})
    assert fit_diagnostics(np.round(Y))["integer_valued_responses"]


def test_write_result_writes_scores_summary_and_maps(tmp_path):
    root = make_synthetic(tmp_path / "data", n_train=60, n_test=10, image_size=32, seed=0)
    ds = load_algonauts(root, "subj01")
    rng = np.random.default_rng(0)
    Y = ds["train"].responses.data
    X = Y[:, :6] + rng.standard_normal((len(Y), 6))
    res = cross_validate_voxels(make_encoder(ALPHAS, device="cpu"), X, Y, ds.voxels, X_test=X[:10])
    names = write_result(res, ds, tmp_path / "out", {"model": "test"})
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model"] == "test" and summary["methods"]["r"] == res.methods["r"]
    assert "constant_voxels" in summary["diagnostics"] and "all" in summary["mean_r"]
    table = pd.read_csv(tmp_path / "out" / "scores.csv")
    np.testing.assert_allclose(table["r"], res.scores["r"], atol=1e-12)
    for name in ("lh.r.gii", "rh.r.gii", "lh_pred_test.npy", "rh_pred_test.npy"):
        assert (tmp_path / "out" / name).exists()
    assert "scores.csv" in names


def test_leave_one_out_scoring_for_ridge():
    from sklearn.model_selection import LeaveOneOut

    X, Y, vox = data(n=60, seed=6)
    res = cross_validate_voxels(RidgeEncoder(alphas=ALPHAS, device="cpu"), X, Y, vox, cv="loo")
    oof = np.column_stack([cross_val_predict(Ridge(alpha=a), X, Y[:, j], cv=LeaveOneOut())
                           for j, a in enumerate(res.scores["alpha"])])
    np.testing.assert_allclose(res.scores["r"], pearson_r(Y, oof), atol=1e-6)
    assert "leave-one-out" in res.methods["r"] and "leave-one-out" in res.methods["alpha"]


def test_methods_say_how_the_alphas_were_searched():
    """More features than samples with K-fold: the alphas are gone down from the largest and the methods say so,
    with the alphas scored per voxel; the exhaustive grid says nothing more, and both pick the same alphas here."""
    X, Y, vox = data(n=60, p=150, v=6)
    ALL = np.logspace(-2, 6, 10)
    down = cross_validate_voxels(make_encoder(ALL, device="cpu"), X, Y, vox, cv=5)
    grid = cross_validate_voxels(make_encoder(ALL, device="cpu", alpha_search="grid"), X, Y, vox, cv=5)
    np.testing.assert_array_equal(down.scores["alpha"], grid.scores["alpha"])
    scored = down.model[-1].alphas_scored_
    assert scored.min() >= 3 and scored.mean() < 10
    assert down.methods["alpha"].endswith(
        f"going down the 10 alphas from the largest, each voxel stopping after 2 in a row scored over 0.001 below"
        f" its best"
        f" ({scored.mean():.1f} scored per voxel on average)"
    )
    assert grid.methods["alpha"] == "chosen per voxel by 5-fold CV on the training split (r2)"
    np.testing.assert_array_equal(grid.model[-1].alphas_scored_, 10)
