"""Every fold's smoothers from one inverse of K + alpha I per alpha (K-fold partitions)."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from braincode.encoding import _descend
from braincode.encoding._partition import FoldOrder, partition_is_cheaper, partition_smoothers
from braincode.encoding._smoother import Smoother
from braincode.encoding.solvers import ridge_cv

from .test_solvers import ALPHAS, assert_matches_direct, signal_data


def fold_kernels(K, train, val, intercept):
    """The fold's kernels, centred on its training rows (what the per-fold smoother is built from)."""
    kt, kv = K[train][:, train], K[val][:, train]
    if intercept:
        r = kt.mean(1)
        kt = kt - r[:, None] - r[None, :] + r.mean()
        kv = kv - kv.mean(1, keepdim=True) - r[None, :] + r.mean()
    return kt, kv


def kfold(X, **kwargs):
    return [(torch.as_tensor(t), torch.as_tensor(v)) for t, v in KFold(**kwargs).split(X)]


@pytest.mark.parametrize("in_place", [True, False])  # LAPACK in the kernel's buffer, or torch (as on a GPU)
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("p", [30, 200])  # rank-deficient kernel (p < n) and full rank
def test_partition_smoothers_equal_one_factor_per_fold(intercept, p, in_place):
    """-G_vv^-1 G_vt from the inverse of all rows (bordered by ones with an intercept) is the fold's smoother
    K_vt (K_tt + alpha I)^-1 of its centred kernels, for shuffled folds and alphas from 1e-6 to 1e4; its
    predictions from a batch in fold order (views of the training rows, intercept by the row sums) are those of
    the fold's own smoother on its centred training responses, to float32 rounding. The kernel is whole
    afterwards."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(120, p, dtype=torch.float64, generator=g) * torch.logspace(0, -3, p, dtype=torch.float64) + 2.0
    K = X @ X.T
    K = (K + K.T) / 2
    before = K.clone()
    alphas = [1e-6, 1e-2, 1.0, 1e4]
    order = FoldOrder.of([v for _, v in kfold(X, n_splits=5, shuffle=True, random_state=0)])
    Y = torch.randn(120, 5, dtype=torch.float64, generator=g) + 3.0
    Y -= Y.mean(0) if intercept else 0.0
    Yp = Y[order.perm]
    got = list(partition_smoothers(K if in_place else K.T, order, alphas, intercept))  # K.T: not contiguous
    assert torch.equal(K, before)
    assert len(got) == len(alphas)
    for a, smoothers in enumerate(got):
        for k in range(5):
            train, val = order.train(k), order.val(k)
            ref = Smoother.build(*fold_kernels(K, train, val, intercept), torch.tensor(alphas[a : a + 1]))
            c = Y[train].mean(0) if intercept else torch.zeros(5, dtype=torch.float64)
            theirs = ref.stacked.double() @ (Y[train] - c)
            ours = smoothers.predictions(Yp.float(), k, c).double().T
            torch.testing.assert_close(ours, theirs, rtol=0, atol=3e-5 * float(theirs.abs().max()))


def test_partition_refuses_an_alpha_below_the_kernels_rounding():
    """A factor of K + alpha I that fails ends the smoothers with None, and the kernel is whole again."""
    X = torch.randn(30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    K = X @ X.T
    K = (K + K.T) / 2
    before = K.clone()
    order = FoldOrder.of([v for _, v in kfold(X, n_splits=3)])
    got = list(partition_smoothers(K, order, [1.0, 1e-300, 2.0], intercept=True))
    assert len(got) == 2 and got[0] is not None and got[1] is None
    assert torch.equal(K, before)


def test_partition_cost_model_prefers_many_folds():
    """One inverse per alpha pays off from 4 folds on (modelled float64 flops), not with 2 or 3."""
    n = 10_000
    choice = {k: partition_is_cheaper([(n - n // k, n // k)] * k) for k in (2, 3, 4, 5, 10)}
    assert choice == {2: False, 3: False, 4: True, 5: True, 10: True}


def count_inverses(monkeypatch):
    """Record every alpha whose smoothers the search asks for (None where the inverse failed)."""
    seen = []

    def recording(*args, _p=_descend.partition_smoothers):
        for smoothers in _p(*args):
            seen.append(smoothers)
            yield smoothers

    monkeypatch.setattr(_descend, "partition_smoothers", recording)
    return seen


def test_descending_search_equals_the_grid_and_stops_early(monkeypatch):
    """Going down the grid with each voxel leaving after PATIENCE alphas without improvement picks the grid
    search's alphas, scores, out-of-fold r and R^2 and weights (single-peaked CV curves, from weak to strong
    signal); the alphas more than PATIENCE below the smallest chosen one are never inverted."""
    X, Y = signal_data(80, 150, 12, seed=2)
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    seen = count_inverses(monkeypatch)
    grid = ridge_cv(X, Y, ALPHAS, splits, device="cpu", show_progress=False, alpha_search="grid")
    assert len(seen) == len(ALPHAS)
    seen.clear()
    down = ridge_cv(X, Y, ALPHAS, splits, device="cpu", show_progress=False, alpha_search="descend")
    np.testing.assert_array_equal(down.best_alphas.numpy(), grid.best_alphas.numpy())
    for name in ("cv_scores", "cv_r", "cv_r2", "coef", "intercept"):
        np.testing.assert_array_equal(getattr(down, name).numpy(), getattr(grid, name).numpy())
    lowest = int(np.searchsorted(ALPHAS, float(down.best_alphas.min())))
    assert lowest > _descend.PATIENCE  # so some alphas are skipped
    assert len(seen) == len(ALPHAS) - (lowest - _descend.PATIENCE)


def test_failed_inverse_falls_back_fold_by_fold(monkeypatch):
    """An alpha below the rounding of a rank-deficient kernel of all rows: that alpha and the smaller ones are
    scored by each fold's own scorers, and the fit still equals the direct float64 scores."""
    seen = count_inverses(monkeypatch)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 90))  # rank 8 of 90 features
    Y = X @ rng.standard_normal((90, 5)) * 0.1 + rng.standard_normal((60, 5))
    assert_matches_direct(X, Y, list(KFold(5).split(X)), alphas=np.r_[1e-300, ALPHAS], alpha_search="grid")
    assert len(seen) == len(ALPHAS) + 1 and seen[-1] is None
