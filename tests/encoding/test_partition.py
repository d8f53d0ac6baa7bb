"""Every fold's smoothers from one inverse of K + alpha I per alpha (K-fold partitions)."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from braincode.encoding import _search
from braincode.encoding._partition import partition_is_cheaper, partition_smoothers
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


@pytest.mark.parametrize("in_place", [True, False])  # LAPACK in the kernel's buffer, or torch (as on a GPU)
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("p", [30, 200])  # rank-deficient kernel (p < n) and full rank
def test_partition_smoothers_equal_one_factor_per_fold(intercept, p, in_place):
    """-G_vv^-1 G_vt from the inverse of all rows (bordered by ones with an intercept) is the fold's smoother
    K_vt (K_tt + alpha I)^-1 of its centred kernels, for shuffled folds and alphas from 1e-6 to 1e4; applied to
    centred responses it gives the same predictions to float32 rounding. The kernel is whole afterwards."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(120, p, dtype=torch.float64, generator=g) * torch.logspace(0, -3, p, dtype=torch.float64) + 2.0
    K = X @ X.T
    K = (K + K.T) / 2
    before = K.clone()
    alphas = [1e-6, 1e-2, 1.0, 1e4]
    folds = [(torch.as_tensor(t), torch.as_tensor(v)) for t, v in KFold(5, shuffle=True, random_state=0).split(X)]
    got = partition_smoothers(K if in_place else K.T, folds, alphas, intercept)  # K.T: not contiguous
    assert torch.equal(K, before)
    for (train, val), smoother in zip(folds, got):
        ref = Smoother.build(*fold_kernels(K, train, val, intercept), torch.tensor(alphas, dtype=torch.float64))
        Z = torch.randn(len(train), 5, dtype=torch.float64, generator=g)
        Z -= Z.mean(0) if intercept else 0.0
        ours, theirs = smoother.stacked.double() @ Z, ref.stacked.double() @ Z
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6 * float(theirs.abs().max()))


def test_partition_refuses_an_alpha_below_the_kernels_rounding():
    """A factor of K + alpha I that fails gives no smoothers, and the kernel is whole again."""
    X = torch.randn(30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    K = X @ X.T
    K = (K + K.T) / 2
    before = K.clone()
    folds = [(torch.as_tensor(t), torch.as_tensor(v)) for t, v in KFold(3).split(X)]
    assert partition_smoothers(K, folds, [1.0, 1e-300], intercept=True) is None
    assert torch.equal(K, before)


def test_partition_cost_model_prefers_many_folds():
    """One inverse per alpha pays off from 4 folds on (modelled float64 flops), not with 2 or 3."""
    n = 10_000
    choice = {k: partition_is_cheaper([(n - n // k, n // k)] * k) for k in (2, 3, 4, 5, 10)}
    assert choice == {2: False, 3: False, 4: True, 5: True, 10: True}


def test_partition_in_alpha_chunks_gives_the_same_fit(monkeypatch):
    """When the smoothers of all alphas do not fit the memory budget they are built a few alphas at a time: the
    scores, the out-of-fold r and R^2 (responses counted once) and the alphas are those of one pass."""
    X, Y = signal_data(80, 150, 12, seed=2)
    splits = list(KFold(5).split(X))
    calls = []
    monkeypatch.setattr(
        _search, "partition_smoothers", lambda *a, _p=_search.partition_smoothers: calls.append(a[2]) or _p(*a)
    )
    one = ridge_cv(X, Y, ALPHAS, splits, device="cpu", show_progress=False)
    per_alpha = 4 * sum(len(t) * len(v) for t, v in splits)
    monkeypatch.setattr(_search, "MAX_SMOOTHER_BYTES", 3 * per_alpha)
    chunked = ridge_cv(X, Y, ALPHAS, splits, device="cpu", show_progress=False)
    assert [len(list(a)) for a in calls] == [10, 2, 3, 2, 3]  # 3 alphas fit: 4 chunks of 2 or 3
    np.testing.assert_array_equal(chunked.best_alphas.numpy(), one.best_alphas.numpy())
    for name in ("cv_scores", "cv_r", "cv_r2"):
        np.testing.assert_allclose(getattr(chunked, name).numpy(), getattr(one, name).numpy(), atol=1e-12)
    np.testing.assert_allclose(chunked.coef.numpy(), one.coef.numpy(), rtol=1e-6, atol=1e-7)


def test_failed_inverse_falls_back_fold_by_fold(monkeypatch):
    """An alpha below the rounding of a rank-deficient kernel of all rows: those folds are scored by their own
    scorers, and the fit still equals the direct float64 scores."""
    results = []
    monkeypatch.setattr(
        _search, "partition_smoothers", lambda *a, _p=_search.partition_smoothers: results.append(_p(*a)) or results[-1]
    )
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 90))  # rank 8 of 90 features
    Y = X @ rng.standard_normal((90, 5)) * 0.1 + rng.standard_normal((60, 5))
    assert_matches_direct(X, Y, list(KFold(5).split(X)), alphas=np.r_[1e-300, ALPHAS])
    assert results == [None]

