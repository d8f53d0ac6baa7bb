"""Ridge solvers against a direct float64 reference, himalaya on the same folds, and data built for banded ridge."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold, ShuffleSplit

from braincode.encoding import _descend, _design, _memory, _scoring, _search
from braincode.encoding.solvers import banded_ridge_cv, ridge_cv, simplex_candidates
from braincode.errors import ConfigError, DataFormatError

ALPHAS = np.logspace(-2, 6, 10)


def direct_cv_scores(X, Y, alphas, splits, fit_intercept=True, score="r2"):
    """Mean validation score of every alpha by solving each ridge problem in float64."""
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    out = torch.zeros(len(alphas), Y.shape[1], dtype=torch.float64)
    for train, val in splits:
        Xt, Yt = X[train], Y[train]
        mx, my = (Xt.mean(0), Yt.mean(0)) if fit_intercept else (0.0, 0.0)
        Xt, Yt = Xt - mx, Yt - my
        for i, a in enumerate(alphas):
            B = torch.linalg.solve(Xt.T @ Xt + a * torch.eye(X.shape[1], dtype=X.dtype), Xt.T @ Yt)
            P, Yv = (X[val] - mx) @ B + my, Y[val]
            if score == "r2":
                out[i] += 1 - ((Yv - P) ** 2).sum(0) / ((Yv - Yv.mean(0)) ** 2).sum(0)
            else:
                a_, b_ = Yv - Yv.mean(0), P - P.mean(0)
                out[i] += (a_ * b_).sum(0) / torch.sqrt((a_**2).sum(0) * (b_**2).sum(0))
    return (out / len(splits)).numpy()


def signal_data(n, p, v, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * scale + 1.0
    snr = np.logspace(-2, 1, v)
    Y = (
        X @ rng.standard_normal((p, v)) / np.sqrt(p) / scale * np.sqrt(snr)
        + rng.standard_normal((n, v))
        + 3.0
    )
    return X, Y


def assert_matches_direct(X, Y, splits, alphas=ALPHAS, **kwargs):
    res = ridge_cv(X, Y, alphas, splits, device="cpu", show_progress=False, **kwargs)
    ref = direct_cv_scores(X, Y, alphas, splits, kwargs.get("fit_intercept", True), kwargs.get("score", "r2"))
    np.testing.assert_allclose(res.cv_scores.numpy(), ref.max(0), atol=2e-6)
    clear = np.sort(ref, 0)[-1] - np.sort(ref, 0)[-2] > 1e-5  # voxels without a near tie
    np.testing.assert_array_equal(res.best_alphas.numpy()[clear], np.asarray(alphas)[ref.argmax(0)][clear])
    return res


@pytest.mark.parametrize("score", ["r2", "pearson"])
@pytest.mark.parametrize("scale", [1e-2, 1.0, 100.0])
def test_primal_matches_direct(score, scale):
    X, Y = signal_data(300, 40, 30, scale=scale)
    assert_matches_direct(X, Y, list(KFold(5).split(X)), score=score)


def test_dual_form_matches_direct():
    X, Y = signal_data(60, 150, 20)
    assert_matches_direct(X, Y, list(KFold(4).split(X)))


def test_degenerate_and_rank_deficient_features():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.standard_normal((300, 40)))  # equal singular values: the within-group path
    _, Y = signal_data(300, 40, 10)
    assert_matches_direct(10 * Q, Y, list(KFold(5).split(Q)))
    X, Y = signal_data(300, 40, 10)
    X[:, 20:] = X[:, :20]  # duplicated columns
    assert_matches_direct(X, Y, list(KFold(5).split(X)))


def test_general_splits_no_intercept_and_batches():
    X, Y = signal_data(200, 30, 12)
    splits = list(ShuffleSplit(4, test_size=0.25, train_size=0.5, random_state=0).split(X))
    assert_matches_direct(X, Y, splits)
    assert_matches_direct(X, Y, list(KFold(5).split(X)), fit_intercept=False)
    kf = list(KFold(5).split(X))
    whole = ridge_cv(X, Y, ALPHAS, kf, device="cpu", show_progress=False)
    batched = ridge_cv(X, Y, ALPHAS, kf, device="cpu", show_progress=False, voxel_batch=5)
    np.testing.assert_array_equal(whole.best_alphas, batched.best_alphas)
    np.testing.assert_allclose(whole.coef, batched.coef, rtol=1e-5, atol=1e-6)


def test_ties_go_to_the_larger_alpha():
    X, Y = signal_data(100, 10, 3)
    Y[:, 1] = 2.0  # constant voxel: every alpha scores 0
    res = ridge_cv(X, Y, ALPHAS, list(KFold(5).split(X)), device="cpu", show_progress=False)
    assert res.best_alphas[1] == ALPHAS.max()


def test_same_alphas_and_predictions_as_himalaya():
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score

    set_backend("numpy")
    X, Y = signal_data(400, 50, 40, seed=2)
    cv = KFold(5)
    ours = ridge_cv(X, Y, ALPHAS, list(cv.split(X)), device="cpu", show_progress=False)
    ref = RidgeCV(alphas=ALPHAS, cv=cv, fit_intercept=True, solver_params={"score_func": r2_score})
    ref.fit(X, Y)
    np.testing.assert_allclose(ours.best_alphas.numpy(), ref.best_alphas_, rtol=1e-9)  # himalaya: exp(-log a)
    pred = X @ ours.coef.double().numpy() + ours.intercept.double().numpy()
    pred_ref = ref.predict(X)
    scale = np.abs(pred_ref).max(0)
    assert (np.abs(pred - pred_ref).max(0) / scale).max() < 1e-4


def two_space_data(seed=0):
    """Voxels 0-9 driven by space A only, 10-19 by space B only, 20-29 by both."""
    rng = np.random.default_rng(seed)
    n = 300
    Xa, Xb = rng.standard_normal((n, 20)), rng.standard_normal((n, 15))
    Ya = Xa @ rng.standard_normal((20, 10)) / 4
    Yb = Xb @ rng.standard_normal((15, 10)) / 4
    Yab = Xa @ rng.standard_normal((20, 10)) / 6 + Xb @ rng.standard_normal((15, 10)) / 6
    Y = np.c_[Ya, Yb, Yab] + rng.standard_normal((n, 30))
    return Xa, Xb, Y


def test_banded_recovers_the_driving_space():
    Xa, Xb, Y = two_space_data()
    res = banded_ridge_cv(
        [Xa, Xb],
        Y,
        ALPHAS,
        list(KFold(5).split(Y)),
        n_iter=30,
        random_state=0,
        device="cpu",
        show_progress=False,
    )
    g = res.best_gammas.numpy()
    assert (g[0, :10] > 0.8).all() and (g[1, 10:20] > 0.8).all()
    assert ((g[0, 20:] > 0.1) & (g[1, 20:] > 0.1)).mean() > 0.7
    banded_pred = np.c_[Xa, Xb] @ res.coef.numpy() + res.intercept.numpy()
    plain = ridge_cv(np.c_[Xa, Xb], Y, ALPHAS, list(KFold(5).split(Y)), device="cpu", show_progress=False)
    assert res.cv_scores.mean() > plain.cv_scores.mean()
    assert np.isfinite(banded_pred).all()


def test_banded_with_one_space_is_ridge_and_dual_banded_runs():
    X, Y = signal_data(120, 20, 8)
    kf = list(KFold(4).split(X))
    one = banded_ridge_cv([X], Y, ALPHAS, kf, n_iter=5, device="cpu", show_progress=False)
    ridge = ridge_cv(X, Y, ALPHAS, kf, device="cpu", show_progress=False)
    np.testing.assert_array_equal(one.best_alphas, ridge.best_alphas)
    np.testing.assert_allclose(one.coef, ridge.coef, rtol=1e-5, atol=1e-6)
    Xa, Xb, Y = two_space_data()
    dual = banded_ridge_cv(
        [Xa[:30], Xb[:30]],
        Y[:30],
        ALPHAS,
        list(KFold(3).split(Y[:30])),
        n_iter=8,
        device="cpu",
        show_progress=False,
    )
    primal_like = direct_banded_score(np.c_[Xa[:30], Xb[:30]], Y[:30], dual, list(KFold(3).split(Y[:30])))
    np.testing.assert_allclose(dual.cv_scores.numpy(), primal_like, atol=2e-6)


def direct_banded_score(X, Y, res, splits):
    """Direct CV score of each voxel's chosen (gamma, alpha), by scaling the columns and solving in float64."""
    sizes = [20, 15]
    out = np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        s = np.repeat(np.sqrt(res.best_gammas[:, j].numpy()), sizes)
        out[j] = direct_cv_scores(X * s, Y[:, [j]], [float(res.best_alphas[j])], splits)[0, 0]
    return out


def test_simplex_candidates():
    c = simplex_candidates(3, 20, random_state=0).numpy()
    assert c.shape == (20, 3)
    np.testing.assert_allclose(c.sum(1), 1.0)
    np.testing.assert_allclose(c[:4], np.r_[[np.full(3, 1 / 3)], np.eye(3)])
    np.testing.assert_array_equal(c, simplex_candidates(3, 20, random_state=0).numpy())


def test_bad_inputs_raise_clear_errors(monkeypatch):
    X, Y = signal_data(50, 5, 3)
    kf = list(KFold(5).split(X))
    with pytest.raises(DataFormatError, match="do not match"):
        ridge_cv(X, Y[:-1], ALPHAS, kf, device="cpu")
    with pytest.raises(ConfigError, match="alphas"):
        ridge_cv(X, Y, [0.0, 1.0], kf, device="cpu")
    with pytest.raises(ConfigError, match="score"):
        ridge_cv(X, Y, ALPHAS, kf, device="cpu", score="mse")
    with pytest.raises(ConfigError, match="empty"):
        ridge_cv(X, Y, ALPHAS, [(np.arange(50), np.arange(0))], device="cpu")
    with pytest.raises(ConfigError, match="device"):
        ridge_cv(X, Y, ALPHAS, kf, device="tpu")
    monkeypatch.setattr(_memory, "free_memory", lambda device: 1000)
    with pytest.raises(ConfigError, match="not enough memory"):
        ridge_cv(X, Y, ALPHAS, kf, device="cpu")
    monkeypatch.setattr(_design, "free_memory", lambda device: 1000)
    with pytest.raises(ConfigError, match="too large"):
        ridge_cv(X, Y, ALPHAS, kf, device="cpu")


@pytest.mark.parametrize("spectrum", ["generic", "close_pairs", "degenerate"])
def test_partial_fraction_scores_match_direct_predictions(spectrum):
    g = torch.Generator().manual_seed(0)
    r, n_val, vb = 30, 25, 7
    lam = torch.linspace(1.0, 50.0, r, dtype=torch.float64)
    if spectrum == "close_pairs":
        lam[1::3] = lam[0::3][: len(lam[1::3])] * (1 + 1e-13)  # groups of two (summed pair by pair)
        lam = torch.sort(lam).values
    elif spectrum == "degenerate":
        lam = torch.full((r,), 7.0, dtype=torch.float64)  # one group (summed with dense products)
    A = torch.randn(n_val, r, generator=g, dtype=torch.float64)
    E = torch.randn(r, vb, generator=g, dtype=torch.float64)
    Yv = torch.randn(n_val, vb, generator=g, dtype=torch.float64) + 0.3
    alphas = torch.logspace(-2, 6, 9, dtype=torch.float64)
    quad = _scoring.Quadratic.build(lam, A.T @ A, A.mean(0), alphas)
    assert (len(quad.pair_j) > 0) == (spectrum == "close_pairs")
    assert (len(quad.within_idx) > 0) == (spectrum == "degenerate")
    Yv0 = Yv - Yv.mean(0)
    sst = (Yv0**2).sum(0)
    targets = _design.Targets(None, None, sst, Yv.mean(0), n_val, Yv.mean(0))  # fold intercept 0
    scores = _scoring.fold_score(*quad.moments(E, A.T @ Yv0), targets, "r2")
    pred = torch.stack([A @ (E / (lam[:, None] + a)) for a in alphas])
    direct = 1 - ((Yv - pred) ** 2).sum(1) / sst
    torch.testing.assert_close(scores, direct, rtol=0, atol=1e-10)


def direct_out_of_fold(X, Y, alphas_per_voxel, splits, fit_intercept=True):
    """Out-of-fold predictions at each voxel's alpha, every ridge problem solved in float64."""
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    pred = torch.full_like(Y, torch.nan)
    for train, val in splits:
        Xt, Yt = X[train], Y[train]
        mx, my = (Xt.mean(0), Yt.mean(0)) if fit_intercept else (0.0, torch.zeros(Y.shape[1], dtype=Y.dtype))
        Xt, Yt = Xt - mx, Yt - my
        for j, a in enumerate(np.asarray(alphas_per_voxel)):
            if X.shape[0] >= X.shape[1]:
                b = torch.linalg.solve(Xt.T @ Xt + a * torch.eye(X.shape[1], dtype=X.dtype), Xt.T @ Yt[:, j])
            else:
                b = Xt.T @ torch.linalg.solve(Xt @ Xt.T + a * torch.eye(len(train), dtype=X.dtype), Yt[:, j])
            pred[val, j] = (X[val] - mx) @ b + my[j]
    return pred.numpy()


@pytest.mark.parametrize(("n", "p", "fit_intercept"), [(90, 12, True), (40, 70, True), (90, 12, False)])
def test_out_of_fold_r_equals_direct_float64_recomputation(n, p, fit_intercept):
    X, Y = signal_data(n, p, 6, seed=3)
    Y[:, 2] = 4.0  # a constant voxel: no score (NaN), not 0
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    res = ridge_cv(X, Y, ALPHAS, splits, fit_intercept=fit_intercept, device="cpu", show_progress=False,
                   keep_oof=True)
    ref = direct_out_of_fold(X, Y, res.best_alphas.numpy(), splits, fit_intercept)
    np.testing.assert_allclose(res.oof.numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    live = np.arange(6) != 2
    a, b = Y[:, live] - Y[:, live].mean(0), ref[:, live] - ref[:, live].mean(0)
    r_ref = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    r2_ref = 1 - ((Y[:, live] - ref[:, live]) ** 2).sum(0) / (a * a).sum(0)
    np.testing.assert_allclose(res.cv_r.numpy()[live], r_ref, atol=1e-6)
    np.testing.assert_allclose(res.cv_r2.numpy()[live], r2_ref, atol=1e-6)
    assert np.isnan(res.cv_r.numpy()[2]) and np.isnan(res.cv_r2.numpy()[2])
    # the default path keeps no predictions (dual: the folds' smoothers, one fold at a time): same r and R^2
    default = ridge_cv(X, Y, ALPHAS, splits, fit_intercept=fit_intercept, device="cpu", show_progress=False)
    np.testing.assert_array_equal(default.best_alphas.numpy(), res.best_alphas.numpy())
    np.testing.assert_allclose(default.cv_r.numpy()[live], r_ref, atol=1e-6)
    np.testing.assert_allclose(default.cv_r2.numpy()[live], r2_ref, atol=1e-6)


def test_out_of_fold_needs_a_partition():
    X, Y = signal_data(60, 5, 2)
    with pytest.raises(ConfigError, match="partition"):
        ridge_cv(X, Y, ALPHAS, list(ShuffleSplit(3, random_state=0).split(X)), device="cpu", keep_oof=True)


def test_dual_refit_equals_sklearn_ridge_at_the_chosen_alphas():
    from sklearn.linear_model import Ridge

    X, Y = signal_data(50, 80, 6, seed=4)
    res = ridge_cv(X, Y, ALPHAS, list(KFold(5).split(X)), device="cpu", show_progress=False, voxel_batch=4)
    for j, alpha in enumerate(res.best_alphas.numpy()):
        ref = Ridge(alpha=alpha).fit(X, Y[:, j])
        np.testing.assert_allclose(res.coef[:, j].numpy(), ref.coef_, rtol=1e-4, atol=1e-5 * np.abs(ref.coef_).max())
        np.testing.assert_allclose(float(res.intercept[j]), ref.intercept_, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("n", "p", "fit_intercept"), [(60, 8, True), (30, 45, True), (60, 8, False)])
def test_leave_one_out_equals_direct_refits(n, p, fit_intercept):
    from sklearn.model_selection import LeaveOneOut

    X, Y = signal_data(n, p, 4, seed=6)
    res = ridge_cv(X, Y, ALPHAS, "loo", fit_intercept=fit_intercept, device="cpu", show_progress=False,
                   keep_oof=True)
    splits = list(LeaveOneOut().split(X))
    ref = direct_out_of_fold(X, Y, res.best_alphas.numpy(), splits, fit_intercept)
    np.testing.assert_allclose(res.oof.numpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    a, b = Y - Y.mean(0), ref - ref.mean(0)
    np.testing.assert_allclose(res.cv_r.numpy(), (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0)),
                               atol=1e-8)
    # the chosen alpha has the best leave-one-out R^2 of the grid, by direct refits
    best = [1 - ((Y - direct_out_of_fold(X, Y, np.full(4, al), splits, fit_intercept)) ** 2).sum(0)
            / (a * a).sum(0) for al in ALPHAS]
    np.testing.assert_allclose(res.cv_scores.numpy(), np.max(best, 0), atol=1e-8)


def test_dual_fold_by_fold_equals_all_folds_at_once():
    X, Y = signal_data(40, 70, 9, seed=8)
    kf = list(KFold(4, shuffle=True, random_state=0).split(X))
    by_fold = ridge_cv(X, Y, ALPHAS, kf, device="cpu", show_progress=False, voxel_batch=4)
    by_batch = ridge_cv(X, Y, ALPHAS, kf, device="cpu", show_progress=False, keep_oof=True)
    np.testing.assert_array_equal(by_fold.best_alphas, by_batch.best_alphas)
    for name in ("cv_scores", "cv_r", "cv_r2", "coef", "intercept"):
        np.testing.assert_allclose(getattr(by_fold, name), getattr(by_batch, name), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [90, 60])  # primal (p=70 < n) and dual
def test_decaying_spectrum_like_network_features_matches_direct(n):
    """Standardised features whose spectrum decays over 4 decades, as pooled network activations do."""
    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.standard_normal((70, 70)))
    X = rng.standard_normal((n, 70)) * np.logspace(0, -4, 70) @ q.T
    X = (X - X.mean(0)) / X.std(0)
    Y = X @ rng.standard_normal((70, 8)) * 0.3 + rng.standard_normal((n, 8))
    assert_matches_direct(X, Y, list(KFold(5, shuffle=True, random_state=0).split(X)))


@pytest.mark.parametrize(("smoother", "partition"), [(True, True), (True, False), (False, False)])
def test_dual_scorers_all_match_direct(monkeypatch, smoother, partition):
    """The dual form scores the folds, by cost, by smoothers from one inverse per alpha (K-fold), by one Cholesky
    factor per fold and alpha, or by each fold's eigen-basis: each gives the direct float64 scores, on features
    whose spectrum decays over 4 decades."""
    built, inverted = [], []
    monkeypatch.setattr(_search, "smoother_is_cheaper", lambda *shape: smoother)
    monkeypatch.setattr(_search, "partition_is_cheaper", lambda sizes: partition)
    monkeypatch.setattr(_search.Smoother, "build", lambda *a, _b=_search.Smoother.build: built.append(1) or _b(*a))
    monkeypatch.setattr(
        _descend, "partition_smoothers", lambda *a, _p=_descend.partition_smoothers: inverted.append(1) or _p(*a)
    )
    rng = np.random.default_rng(10)
    q, _ = np.linalg.qr(rng.standard_normal((90, 90)))
    X = rng.standard_normal((60, 90)) * np.logspace(0, -4, 90) @ q.T
    X = (X - X.mean(0)) / X.std(0)
    Y = X @ rng.standard_normal((90, 7)) * 0.2 + rng.standard_normal((60, 7)) + 2.0
    for score in ("r2", "pearson"):
        assert_matches_direct(X, Y, list(KFold(5, shuffle=True, random_state=1).split(X)), score=score)
    assert len(built) == (10 if smoother and not partition else 0)  # 5 folds, 2 scores
    assert len(inverted) == (2 if partition else 0)


def test_smoother_refuses_an_alpha_below_the_kernels_rounding():
    """A Cholesky factor that fails (alpha far below the rounding of a rank-deficient kernel) gives no smoother,
    and the fold falls back to its eigen-basis."""
    from braincode.encoding._smoother import Smoother

    X = torch.randn(30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    K = X @ X.T
    assert Smoother.build(K[:20, :20].clone(), K[20:, :20], torch.tensor([1e-300], dtype=torch.float64)) is None
    smoother = Smoother.build(K[:20, :20].clone(), K[20:, :20], torch.tensor([1.0, 10.0], dtype=torch.float64))
    ref = K[20:, :20] @ torch.linalg.inv(K[:20, :20] + 10.0 * torch.eye(20, dtype=torch.float64))
    torch.testing.assert_close(smoother.stacked[10:].double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stop_after", [1, 3])
def test_factors_in_the_kernels_buffer_solve_exactly_and_leave_it_whole(stop_after):
    """On the CPU each K + alpha I is factored in place of K (LAPACK in its lower triangle): the solutions equal a
    direct float64 solve, and K is whole again after the last factor, after an early stop and after a failed one."""
    from braincode.encoding._smoother import shifted_factors

    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 25, dtype=torch.float64, generator=g)
    K = X @ X.T  # rank 25: alpha 1e-300 fails
    K = (K + K.T) / 2  # symmetric to the last bit, as the kernel's upper triangle is what is kept
    before = K.clone()
    rhs = torch.randn(6, 40, dtype=torch.float64, generator=g)
    alphas = [0.5, 10.0, 1e3, 1e-300]
    factors = shifted_factors(K, alphas)
    for alpha, (chol, info) in zip(alphas[:stop_after], factors):
        assert chol.factor.data_ptr() == K.data_ptr() and info == 0
        want = torch.linalg.solve(before + alpha * torch.eye(40, dtype=torch.float64), rhs.T).T
        torch.testing.assert_close(chol.solve_rows(rhs), want, rtol=1e-10, atol=1e-12)
        own = rhs.clone()
        assert chol.solve_rows(own, overwrite=True).data_ptr() == own.data_ptr()
        torch.testing.assert_close(own, want, rtol=1e-10, atol=1e-12)
    factors.close()
    assert torch.equal(K, before)
    assert [info for _, info in shifted_factors(K, alphas)][-1] > 0
    assert torch.equal(K, before)


def test_copy_X_false_centres_the_callers_features_in_place_with_the_same_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 80)).astype(np.float32) + 3.0  # dual form (p > n), a mean to remove
    Y = X[:, :4] @ rng.standard_normal((4, 3)).astype(np.float32) + rng.standard_normal((50, 3)).astype(np.float32)
    splits = list(KFold(5).split(X))
    ref = ridge_cv(X, Y, ALPHAS, splits, device="cpu", show_progress=False)
    own = X.copy()
    fit = ridge_cv(own, Y, ALPHAS, splits, device="cpu", show_progress=False, copy_X=False)
    np.testing.assert_allclose(own, X - X.mean(0), atol=1e-5)  # centred in place
    torch.testing.assert_close(fit.coef, ref.coef)
    torch.testing.assert_close(fit.intercept, ref.intercept)
    frozen = X.copy()
    frozen.flags.writeable = False
    ridge_cv(frozen, Y, ALPHAS, splits, device="cpu", show_progress=False, copy_X=False)
    np.testing.assert_array_equal(frozen, X)  # a read-only array is copied, never written
