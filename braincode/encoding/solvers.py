"""Voxel-wise ridge solvers: pure functions on torch tensors, on CPU or CUDA.

:func:`ridge_cv` picks one alpha per voxel by K-fold cross-validation and refits on all training data;
:func:`banded_ridge_cv` adds one weight per feature space. Both work in the eigen-basis of each training fold
(``X_tr = U S V^T``, eigenvalues ``lam = s**2``), where ridge with any alpha is a diagonal scaling.

How the cross-validation stays cheap
------------------------------------
For a validation set with centred responses ``Yv`` and ``A = Xv V``, ``E = V^T X_tr^T Y_tr`` and
``d_a = 1 / (lam + a)``, the validation predictions are ``P_a = A diag(d_a) E``. The scores only need three
per-voxel numbers from ``P_a``: ``<Yv, P_a>``, ``mean(P_a)`` and ``||P_a||^2``. The first two are linear in
``d_a`` and cost one small ``(n_alphas, r) @ (r, n_voxels)`` product for all alphas at once. The squared norm is
the quadratic form ``sum_jk H_jk E_j E_k d_j d_k`` with ``H = A^T A``; with the partial fractions
``d_j d_k = (d_j - d_k) / (lam_k - lam_j)`` it becomes linear in ``d_a`` too:
``||P_a||^2 = sum_j d_j^2 H_jj E_j^2 + 2 sum_j d_j E_j (M E)_j`` with ``M_jk = H_jk / (lam_k - lam_j)``,
so one ``r x r`` product per fold (float64) replaces the ``n_alphas`` validation predictions. Eigenvalues
closer than ``CLUSTER_TOL * (lam_max + alpha_max)`` are grouped, and pairs inside a group are summed directly
(with a fully degenerate spectrum this falls back to the direct ``r^2`` cost per alpha).
``X_tr^T Y_tr`` is ``X^T Y - Xv^T Yv`` when the training set is the complement of the validation set, so the
``n x p x n_voxels`` product is done once, not once per fold.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from braincode.encoding._memory import resolve_device, voxel_batch_size
from braincode.errors import ConfigError, DataFormatError
from braincode.progress import progress

logger = logging.getLogger(__name__)

#: Scores that can select alphas.
SCORES = ("r2", "pearson")
#: Relative eigenvalue gap below which two directions are summed directly instead of by partial fractions.
CLUSTER_TOL = 1e-6
#: Mean CV scores within this of the best count as ties; ties go to the larger alpha.
TIE_TOL = 1e-10

Splits = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass
class RidgeCVResult:
    """What :func:`ridge_cv` returns (CPU tensors).

    Attributes
    ----------
    coef : Tensor of shape (n_features, n_voxels), float32
    intercept : Tensor of shape (n_voxels,), float32
    best_alphas : Tensor of shape (n_voxels,), float64
    cv_scores : Tensor of shape (n_voxels,), float64
        Mean over folds of the chosen alpha's score.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    best_alphas: torch.Tensor
    cv_scores: torch.Tensor


@dataclass
class _Quadratic:
    """Per-fold pieces of ``||A diag(d) E||^2`` split into diagonal, cross-group and within-group parts."""

    hdiag: torch.Tensor  # (r,) H_jj
    cross: torch.Tensor  # (r, r) H_jk / (lam_k - lam_j) across groups, 0 inside
    within_idx: torch.Tensor  # (m,) directions that share a group with another one
    within: torch.Tensor  # (m, m) H restricted to pairs in the same group, zero diagonal
    abar: torch.Tensor  # (r,) mean row of A

    @classmethod
    def build(cls, lam: torch.Tensor, A: torch.Tensor, alpha_max: float) -> _Quadratic:
        """Group close eigenvalues (``lam`` ascending) and precompute the partial-fraction matrix."""
        H = A.T @ A
        gap_tol = CLUSTER_TOL * (float(lam[-1]) + alpha_max)
        group = torch.cat([lam.new_zeros(1, dtype=torch.long), torch.cumsum(torch.diff(lam) > gap_tol, 0)])
        same = group[:, None] == group[None, :]
        gaps = lam[None, :] - lam[:, None]
        cross = torch.where(same, torch.zeros_like(H), H / torch.where(same, torch.ones_like(gaps), gaps))
        idx = torch.nonzero(torch.bincount(group)[group] > 1).flatten()
        within = (H * same)[idx][:, idx]
        within.fill_diagonal_(0.0)
        return cls(torch.diagonal(H).clone(), cross, idx, within, A.mean(0))

    def norms_and_means(self, D: torch.Tensor, E: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``||A diag(d_a) E||^2`` and the mean row of ``A diag(d_a) E``, each (n_alphas, n_voxels)."""
        sq = (D * D) @ (self.hdiag[:, None] * E * E) + D @ (2.0 * E * (self.cross @ E))
        if self.within_idx.numel():
            Ew = E[self.within_idx]
            for a in range(D.shape[0]):
                scaled = D[a, self.within_idx, None] * Ew
                sq[a] += (scaled * (self.within @ scaled)).sum(0)
        return sq, D @ (self.abar[:, None] * E)


@dataclass
class _Basis:
    """Eigen-basis of one training set and what scoring its validation set needs."""

    train: torch.Tensor
    val: torch.Tensor
    complement: bool  # train is every sample not in val
    lam: torch.Tensor  # (r,) float64, ascending
    vecs: torch.Tensor  # primal: V (p, r); dual: U (n_train, r); float32
    x_offset_train: torch.Tensor | None  # primal: (p,) centring offset of the training fold
    x_mean_val: torch.Tensor | None  # primal: (p,) mean of the validation rows
    A: torch.Tensor | None  # dual: (n_val, r) validation rows in the basis, float32
    quad: _Quadratic | None


def _eigh_truncated(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a float64 Gram matrix without its numerically-zero directions."""
    lam, vecs = torch.linalg.eigh(gram)
    keep = lam > max(float(lam[-1]), 0.0) * gram.shape[0] * torch.finfo(torch.float64).eps
    if not bool(keep.any()):
        keep[-1] = True  # all-zero features: one harmless direction keeps the shapes valid
        lam = lam.clamp_min(torch.finfo(torch.float64).tiny)
    return lam[keep], vecs[:, keep]


def _primal_basis(
    Xc: torch.Tensor,
    gram: torch.Tensor,
    train: torch.Tensor,
    val: torch.Tensor,
    center: bool,
    alpha_max: float | None,
) -> _Basis:
    n_train, n_val = len(train), len(val)
    complement = n_train + n_val == Xc.shape[0] and not bool(torch.isin(train, val).any())
    Xv = Xc[val].double()
    x_mean_val = Xv.mean(0)
    if complement:
        g_train = gram - Xv.T @ Xv
        x_mean_train = -x_mean_val * n_val / n_train  # Xc is centred when center, else unused
    else:
        Xt = Xc[train].double()
        g_train = Xt.T @ Xt
        x_mean_train = Xt.mean(0)
    offset = x_mean_train if center else torch.zeros_like(x_mean_train)
    if center:
        g_train = g_train - n_train * torch.outer(offset, offset)
    lam, V = _eigh_truncated(g_train)
    quad = None if alpha_max is None else _Quadratic.build(lam, (Xv - offset) @ V, alpha_max)
    return _Basis(train, val, complement, lam, V.float(), offset.float(), x_mean_val.float(), None, quad)


def _dual_basis(
    Xc: torch.Tensor, train: torch.Tensor, val: torch.Tensor, center: bool, alpha_max: float | None
) -> _Basis:
    Xt = Xc[train].double()
    offset = Xt.mean(0) if center else torch.zeros(Xc.shape[1], dtype=torch.float64, device=Xc.device)
    Xt = Xt - offset
    lam, U = _eigh_truncated(Xt @ Xt.T)
    A = None
    quad = None
    if alpha_max is not None:
        A = ((Xc[val].double() - offset) @ Xt.T) @ U
        quad = _Quadratic.build(lam, A, alpha_max)
        A = A.float()
    return _Basis(train, val, False, lam, U.float(), None, None, A, quad)


def _bases(
    Xc: torch.Tensor, splits: Splits, center: bool, alpha_max: float, primal: bool
) -> tuple[list[_Basis], _Basis]:
    """One basis per fold, then the basis of all samples (for the refit)."""
    device = Xc.device
    n = Xc.shape[0]
    everything = torch.arange(n, device=device)
    nothing = everything[:0]
    if primal:
        X64 = Xc.double()
        gram = X64.T @ X64
        del X64
        folds = [
            _primal_basis(Xc, gram, tr, va, center, alpha_max) for tr, va in _index_tensors(splits, device)
        ]
        lam, V = _eigh_truncated(gram)
        full = _Basis(everything, nothing, True, lam, V.float(), None, None, None, None)
    else:
        folds = [_dual_basis(Xc, tr, va, center, alpha_max) for tr, va in _index_tensors(splits, device)]
        full = _dual_basis(Xc, everything, nothing, center=False, alpha_max=None)
    return folds, full


def _index_tensors(splits: Splits, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (
            torch.as_tensor(np.asarray(tr), dtype=torch.long, device=device),
            torch.as_tensor(np.asarray(va), dtype=torch.long, device=device),
        )
        for tr, va in splits
    ]


def _fold_scores(
    basis: _Basis,
    Xc: torch.Tensor,
    Yc: torch.Tensor,
    XtY: torch.Tensor | None,
    D: torch.Tensor,
    score: str,
    center: bool,
) -> torch.Tensor:
    """Validation scores of every alpha (rows of ``D = 1 / (lam + alpha)``) for one fold, float64."""
    Yv = Yc[basis.val]
    n_val, n_train = len(basis.val), len(basis.train)
    y_mean_val = Yv.sum(0, dtype=torch.float64) / n_val
    Yv0 = Yv - y_mean_val.float()
    sst = Yv0.double().square().sum(0)
    if basis.x_mean_val is not None:  # primal
        XvtYv = Xc[basis.val].T @ Yv
        if basis.complement:
            XttYt = XtY - XvtYv
            y_mean_train = -y_mean_val * n_val / n_train
        else:
            XttYt = Xc[basis.train].T @ Yc[basis.train]
            y_mean_train = Yc[basis.train].sum(0, dtype=torch.float64) / n_train
        intercept = y_mean_train if center else torch.zeros_like(y_mean_train)
        # (Xt - o)^T (Yt - c) = Xt^T Yt - n_train o c^T, with o, c the training means (or 0 without intercept)
        Z = XttYt - n_train * torch.outer(basis.x_offset_train, intercept.float())
        E = basis.vecs.T @ Z
        F = basis.vecs.T @ (XvtYv - n_val * torch.outer(basis.x_mean_val, y_mean_val.float()))
    else:  # dual
        Yt = Yc[basis.train]
        y_mean_train = Yt.sum(0, dtype=torch.float64) / n_train
        intercept = y_mean_train if center else torch.zeros_like(y_mean_train)
        E = basis.vecs.T @ (Yt - intercept.float())
        F = basis.A.T @ Yv0
    E, F = E.double(), F.double()
    cov = D @ (F * E)
    sq, pbar = basis.quad.norms_and_means(D, E)
    if score == "r2":
        delta = y_mean_val - intercept
        sse = sst + n_val * delta * delta + sq - 2.0 * cov - 2.0 * n_val * delta * pbar
        return torch.where(sst > 0, 1.0 - sse / torch.where(sst > 0, sst, 1.0), 0.0)
    var = (sq - n_val * pbar * pbar).clamp_min(0.0)
    denom = torch.sqrt(sst * var)
    return torch.where(denom > 0, cov / torch.where(denom > 0, denom, 1.0), 0.0)


def select_alphas(mean_scores: torch.Tensor, tol: float = TIE_TOL) -> torch.Tensor:
    """Index of the best row per column; among rows within ``tol`` of the best, the last (largest alpha).

    Examples
    --------
    >>> select_alphas(torch.tensor([[0.1, 0.5], [0.3, 0.5]], dtype=torch.float64)).tolist()
    [1, 1]
    """
    ok = mean_scores >= mean_scores.max(0).values - tol
    return mean_scores.shape[0] - 1 - ok.flip(0).to(torch.int8).argmax(0)


def check_alphas(alphas: Sequence[float] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Alphas as a sorted float64 tensor; positive, finite, at least one.

    Examples
    --------
    >>> check_alphas([10, 0.1, 1]).tolist()
    [0.1, 1.0, 10.0]
    """
    a = (
        alphas.detach().cpu()
        if torch.is_tensor(alphas)
        else torch.as_tensor(np.asarray(alphas, dtype=np.float64))
    )
    a = a.double().ravel()
    if a.numel() == 0 or not bool(torch.isfinite(a).all()) or bool((a <= 0).any()):
        raise ConfigError(
            "alphas must be positive finite numbers",
            expected="a non-empty list of alphas > 0, e.g. numpy.logspace(-2, 6, 10)",
            found=f"{a.tolist()[:10]}",
        )
    return torch.unique(a)  # sorted ascending


def as_tensor(data: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A tensor sharing memory with ``data`` when possible (read-only arrays too: the solvers never write).

    Examples
    --------
    >>> as_tensor(np.ones((2, 2), dtype=np.float32)).dtype
    torch.float32
    """
    if torch.is_tensor(data):
        return data.detach()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(np.asarray(data))


def _check_data(X: torch.Tensor, Y: torch.Tensor, splits: Splits) -> None:
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise DataFormatError(
            "features and responses do not match",
            expected="X of shape (n_samples, n_features) and Y of shape (n_samples, n_voxels)",
            found=f"X {tuple(X.shape)} and Y {tuple(Y.shape)}",
        )
    for k, (tr, va) in enumerate(splits):
        if len(tr) == 0 or len(va) == 0:
            raise ConfigError(
                f"cross-validation split {k} has an empty training or validation set",
                expected="non-empty train and validation indices",
                found=f"{len(tr)} and {len(va)} samples",
                fix="use fewer folds or more samples",
            )


def ridge_cv(
    X: torch.Tensor | np.ndarray,
    Y: torch.Tensor | np.ndarray,
    alphas: Sequence[float] | np.ndarray | torch.Tensor,
    splits: Splits,
    *,
    score: str = "r2",
    fit_intercept: bool = True,
    device: str | torch.device = "auto",
    voxel_batch: int | None = None,
    show_progress: bool = True,
) -> RidgeCVResult:
    """Ridge with one alpha per voxel chosen by cross-validation, refit on all samples.

    Each voxel takes the alpha with the best mean validation score over ``splits`` (ties: the larger alpha),
    then the model is refit on all samples with that alpha. The primal form (``p x p`` eigen-problems) is used
    when ``n_samples >= n_features``, the dual form (``n x n``) otherwise. ``Y`` stays where it is (e.g. on the
    CPU) and is moved to ``device`` one voxel batch at a time.

    Parameters
    ----------
    X : Tensor or ndarray of shape (n_samples, n_features)
    Y : Tensor or ndarray of shape (n_samples, n_voxels)
    alphas : sequence of float
        Candidate regularisations (positive).
    splits : sequence of (train_indices, validation_indices)
    score : {"r2", "pearson"}
        Validation score that selects alphas.
    fit_intercept : bool
        Centre X and Y (per training fold, and for the refit) like :class:`sklearn.linear_model.Ridge`.
    device : {"auto", "cpu", "cuda"} or torch.device
    voxel_batch : int, optional
        Voxels per batch; by default as many as fit in half the free memory (at most 16384).
    show_progress : bool
        A tqdm bar over voxel batches (also off with ``BRAINCODE_PROGRESS=0``).

    Returns
    -------
    RidgeCVResult

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X, Y = torch.randn(60, 5, generator=g), torch.randn(60, 3, generator=g)
    >>> splits = [(np.r_[20:60], np.r_[0:20]), (np.r_[0:20, 40:60], np.r_[20:40]), (np.r_[0:40], np.r_[40:60])]
    >>> res = ridge_cv(X, Y, [0.1, 10.0, 1000.0], splits, device="cpu", show_progress=False)
    >>> tuple(res.coef.shape), res.best_alphas.shape[0]
    ((5, 3), 3)
    """
    if score not in SCORES:
        raise ConfigError("unknown score", expected=f"one of {SCORES}", found=repr(score))
    dev = resolve_device(device)
    X, Y = as_tensor(X), as_tensor(Y)
    _check_data(X, Y, splits)
    alphas_t = check_alphas(alphas)
    n, p = X.shape
    v = Y.shape[1]
    primal = n >= p
    X = X.to(dev, torch.float32)
    x_mean = X.mean(0, dtype=torch.float64) if fit_intercept else X.new_zeros(p, dtype=torch.float64)
    Xc = X - x_mean.float() if fit_intercept else X
    del X
    folds, full = _bases(Xc, splits, fit_intercept, float(alphas_t[-1]), primal)
    logger.info(
        "ridge_cv: %s form, n=%d p=%d v=%d, %d folds, %d alphas, ranks %s",
        "primal" if primal else "dual",
        n,
        p,
        v,
        len(folds),
        len(alphas_t),
        [int(f.lam.numel()) for f in folds],
    )

    alphas_dev = alphas_t.to(dev)
    Ds = [1.0 / (f.lam[None, :] + alphas_dev[:, None]) for f in folds]
    r = max(int(f.lam.numel()) for f in folds)
    m = max(int(f.quad.within_idx.numel()) for f in folds)
    per_voxel = 4 * (4 * n + 6 * p) + 8 * (8 * r + 2 * m + 4 * len(alphas_t))
    batch = voxel_batch_size(v, per_voxel, 0, dev, voxel_batch)

    coef = torch.empty(p, v, dtype=torch.float32)
    intercept = torch.empty(v, dtype=torch.float32)
    best = torch.empty(v, dtype=torch.float64)
    cv_scores = torch.empty(v, dtype=torch.float64)
    starts = range(0, v, batch)
    for start in progress(starts, desc="ridge_cv", total=len(starts), enabled=show_progress):
        cols = slice(start, min(start + batch, v))
        Yb = Y[:, cols].to(dev, torch.float32)
        y_mean = (
            Yb.mean(0, dtype=torch.float64)
            if fit_intercept
            else Yb.new_zeros(Yb.shape[1], dtype=torch.float64)
        )
        Yc = Yb - y_mean.float() if fit_intercept else Yb
        del Yb
        XtY = Xc.T @ Yc if primal else None
        total = sum(_fold_scores(f, Xc, Yc, XtY, D, score, fit_intercept) for f, D in zip(folds, Ds))
        mean_scores = total / len(folds)
        idx = select_alphas(mean_scores)
        b_alphas = alphas_dev[idx]
        W = _refit(full, Xc, Yc, XtY, b_alphas)
        coef[:, cols] = W.cpu()
        intercept[cols] = (y_mean - x_mean @ W.double()).float().cpu()
        best[cols] = b_alphas.cpu()
        cv_scores[cols] = mean_scores.gather(0, idx[None]).squeeze(0).cpu()
    return RidgeCVResult(coef, intercept, best, cv_scores)


def _refit(full: _Basis, Xc: torch.Tensor, Yc: torch.Tensor, XtY: torch.Tensor | None, alphas: torch.Tensor):
    """Coefficients (p, vb) on all samples with one alpha per voxel, float32."""
    scale = (1.0 / (full.lam[:, None] + alphas[None, :])).float()
    if XtY is not None:  # primal: V diag(1/(lam+a)) V^T X^T Y
        return full.vecs @ (scale * (full.vecs.T @ XtY))
    return Xc.T @ (full.vecs @ (scale * (full.vecs.T @ Yc)))  # dual: X^T U diag(1/(lam+a)) U^T Y
