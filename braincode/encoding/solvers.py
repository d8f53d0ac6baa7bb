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
``X_tr^T Y_tr`` is ``X^T Y - Xv^T Yv`` when the training set is the complement of the validation set, and
``X^T Y`` is the sum of the folds' ``Xv^T Yv`` when the validation sets partition the samples (K-fold), so the
``n x p x n_voxels`` products cost one pass over the data in all. Banded ridge reuses them for every candidate.

The same three moments, summed over folds with each fold's intercept, give the Pearson r and R^2 of the
out-of-fold predictions at each voxel's chosen alpha (``cv_r``, ``cv_r2``; :mod:`braincode.encoding._scoring`).

At scale (features outnumber samples, the dual form): each fold's centred kernels are cut from one float64
kernel of all rows, and each fold is scored by whichever costs less (:func:`~braincode.encoding._smoother.
smoother_is_cheaper`): its eigen-basis as above, or its smoothers ``K_vt (K_tt + alpha I)^-1`` (one float64 Cholesky
factor per alpha; a voxel batch then costs one float32 product that gives every alpha's validation predictions:
:mod:`braincode.encoding._smoother`). With K-fold splits (validation folds that partition the samples) every
fold's smoothers come from one inverse of ``K + alpha I`` of all rows per alpha instead
(:mod:`braincode.encoding._partition`: 1.33 n^3 float64 flops per alpha for 5 folds, against 2.13 n^3), as many
alphas at a time as :data:`~braincode.encoding._memory.MAX_SMOOTHER_BYTES` holds. The factorisations run on the
cores other processes leave idle, then each fold's voxel batches (memory: the kernel, the smoothers, one batch);
the refit solves ``K + alpha I`` with one float64 Cholesky factor per chosen alpha.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np
import torch

from braincode.devices import resolve_device
from braincode.encoding._memory import (
    MAX_SMOOTHER_BYTES,
    MEMORY_SHARE,
    cpu_threads,
    free_memory,
    idle_cores,
    voxel_batch_size,
)
from braincode.encoding._partition import partition_is_cheaper, partition_smoothers
from braincode.encoding._scoring import OutOfFold, Quadratic, fold_score
from braincode.encoding._smoother import Smoother, shifted_factors, smoother_is_cheaper
from braincode.errors import ConfigError, DataFormatError
from braincode.progress import progress

logger = logging.getLogger(__name__)

#: Scores that can select alphas.
SCORES = ("r2", "pearson")
#: Mean CV scores within this of the best count as ties; ties go to the larger alpha.
TIE_TOL = 1e-10
#: Refit bases (one eigen-decomposition of all rows per feature-space weighting) kept across voxel batches.
FULL_BASIS_CACHE = 16

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
    cv_r, cv_r2 : Tensor of shape (n_voxels,), float64
        Pearson r and R^2 of the out-of-fold predictions at each voxel's chosen alpha (the same folds'
        decompositions, no extra fit), over all validation rows together; NaN for a constant voxel.
    oof : Tensor of shape (n_samples, n_voxels), float32, or None
        Those out-of-fold predictions (with ``keep_oof=True``; K-fold splits only).
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    best_alphas: torch.Tensor
    cv_scores: torch.Tensor
    cv_r: torch.Tensor
    cv_r2: torch.Tensor
    oof: torch.Tensor | None = None


@dataclass
class _Split:
    """One cross-validation split and the Gram (primal) or kernel (dual) blocks that do not depend on weights."""

    train: torch.Tensor
    val: torch.Tensor
    complement: bool  # train is every sample not in val
    offset: torch.Tensor  # (p,) float64, centring offset of the training rows (0 without intercept)
    x_mean_val: torch.Tensor  # (p,) float64, mean of the validation rows
    gram_train: torch.Tensor | None = None  # primal: (p, p) (Xt - o)^T (Xt - o)
    gram_val: torch.Tensor | None = None  # primal: (p, p) (Xv - o)^T (Xv - o)


@dataclass
class _Basis:
    """Eigen-basis of one training set for one set of feature-space weights.

    ``E = left^T Z`` and ``F = right^T W`` with the fold targets ``Z``, ``W`` of :func:`_fold_targets`; primal:
    ``left = right = diag(sqrt(gamma)) V``; dual: ``left = U``, ``right = A``.
    """

    lam: torch.Tensor  # (r,) float64, ascending
    left: torch.Tensor  # float32
    right: torch.Tensor | None  # float32 (None for the full-data basis)
    quad: Quadratic | None

    def moments(self, t: _Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The validation moments of every alpha (:meth:`~braincode.encoding._scoring.Quadratic.moments`)."""
        return self.quad.moments(self.left.T @ t.Z, self.right.T @ t.W)


@dataclass
class _Targets:
    """Per voxel batch and split: what the scores need from the responses (independent of weights)."""

    Z: torch.Tensor  # primal: (Xt - o)^T (Yt - c), (p, vb); dual: Yt - c, (n_train, vb); float32
    W: torch.Tensor  # primal: Xv^T (Yv - mean), (p, vb); dual: Yv - mean, (n_val, vb); float32
    sst: torch.Tensor  # (vb,) float64, validation sum of squares about the validation mean
    delta: torch.Tensor  # (vb,) float64, validation mean minus the fold intercept c
    n_val: int
    y_mean: torch.Tensor  # (vb,) float64, validation mean (of the centred batch)


class _Design:
    """Centred features on the device, split into feature spaces, with per-split Grams (primal) or the kernels of
    all rows (dual: each fold's centred kernels are cut from them, see :meth:`fold_kernels`)."""

    def __init__(
        self, Xs: Sequence[torch.Tensor], splits: Splits, center: bool, device: torch.device, copy: bool = True
    ) -> None:
        self.n, self.sizes = Xs[0].shape[0], [x.shape[1] for x in Xs]
        self.p = sum(self.sizes)
        self.primal = self.n >= self.p
        _check_fits(self.n, self.p, len(Xs), len(splits), self.primal, device)
        # threads for the eigen-decompositions (a 0.2 s measurement, worth it when they take seconds)
        self.threads = idle_cores(device) if min(self.n, self.p) >= 1000 else torch.get_num_threads()
        if copy or len(Xs) > 1:
            self.Xc = torch.cat([x.to(device, torch.float32) for x in Xs], 1)  # a copy: centred in place
        else:  # the caller's own features, centred in place (a copy only where the dtype or device differs)
            self.Xc = Xs[0].to(device, torch.float32).contiguous()
        self.center = center
        self.mean = self.Xc.mean(0, dtype=torch.float64) if center else self.Xc.new_zeros(self.p).double()
        if center:
            self.Xc.sub_(self.mean.float())
        if self.primal:
            X64 = self.Xc.double()
            self.gram = X64.T @ X64
        else:  # float64 kernels accumulated over column chunks: no float64 copy of X
            X64 = None
            self.kernels = [_kernel(x) for x in torch.split(self.Xc, self.sizes, 1)]
        self.splits = [self._split(X64, tr, va) for tr, va in splits]
        vals = torch.cat([s.val for s in self.splits])
        self.partition = (
            all(s.complement for s in self.splits)
            and len(vals) == self.n
            and bool((torch.sort(vals).values == torch.arange(self.n, device=device)).all())
        )

    def _split(self, X64: torch.Tensor | None, train: np.ndarray, val: np.ndarray) -> _Split:
        dev = self.Xc.device
        train_t = torch.as_tensor(np.asarray(train), dtype=torch.long, device=dev)
        val_t = torch.as_tensor(np.asarray(val), dtype=torch.long, device=dev)
        n_train, n_val = len(train_t), len(val_t)
        complement = n_train + n_val == self.n and not bool(torch.isin(train_t, val_t).any())
        if X64 is None:  # dual: only the means (float64 sums of the float32 rows)
            x_mean_val = self.Xc[val_t].mean(0, dtype=torch.float64)
            offset = self.Xc[train_t].mean(0, dtype=torch.float64) if self.center else torch.zeros_like(x_mean_val)
            return _Split(train_t, val_t, complement, offset, x_mean_val)
        Xv = X64[val_t]
        x_mean_val = Xv.mean(0)
        offset = X64[train_t].mean(0) if self.center else torch.zeros_like(x_mean_val)
        split = _Split(train_t, val_t, complement, offset, x_mean_val)
        raw = Xv.T @ Xv
        # (Xv - o)^T (Xv - o) = Xv^T Xv - n_val (m o^T + o m^T - o o^T), m the validation mean
        g_val = raw.clone().addr_(x_mean_val, offset, alpha=-n_val).addr_(offset, x_mean_val, alpha=-n_val)
        split.gram_val = g_val.addr_(offset, offset, alpha=n_val)
        if complement:  # (Xt - o)^T (Xt - o) = G - Xv^T Xv - n_train o o^T  (Xc is centred, or o = 0)
            split.gram_train = (self.gram - raw).addr_(offset, offset, alpha=-n_train)
        else:
            Xt = X64[train_t] - offset
            split.gram_train = Xt.T @ Xt
        return split

    def eigh(self, gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`_eigh_truncated` on the threads that are free (:func:`~braincode.encoding._memory.idle_cores`)."""
        with cpu_threads(self.threads, gram.device):
            return _eigh_truncated(gram)

    def feature_scale(self, gamma: torch.Tensor) -> torch.Tensor:
        """sqrt(gamma) of each feature's space, (p,) float64."""
        sizes = torch.as_tensor(self.sizes, device=gamma.device)
        return torch.repeat_interleave(torch.sqrt(gamma), sizes)

    def fold_basis(self, split: _Split, gamma: torch.Tensor, alphas: torch.Tensor) -> _Basis:
        """Eigen-basis of the split's training rows with feature space k scaled by sqrt(gamma_k)."""
        if self.primal:
            s = self.feature_scale(gamma)
            lam, V = self.eigh(s[:, None] * split.gram_train * s[None, :])
            SV = s[:, None] * V
            A_mean = (split.x_mean_val - split.offset) @ SV
            quad = Quadratic.build(lam, SV.T @ split.gram_val @ SV, A_mean, alphas)
            left = SV.float()
            return _Basis(lam, left, left, quad)
        k_train, k_val = self.fold_kernels(split, gamma)
        lam, U = self.eigh(k_train)
        del k_train
        A = k_val @ U
        quad = Quadratic.build(lam, A.T @ A, A.mean(0), alphas)
        return _Basis(lam, U.float(), A.float(), quad)

    def weighted_kernel(self, gamma: torch.Tensor) -> torch.Tensor:
        """``sum_k gamma_k K_k`` over the feature spaces (the kernel itself for one space of weight 1)."""
        if len(self.kernels) == 1 and float(gamma[0]) == 1.0:
            return self.kernels[0]
        return sum(g * k for g, k in zip(gamma.tolist(), self.kernels))

    def fold_kernels(self, split: _Split, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernels ``(Xt - o)(Xt - o)^T`` and ``(Xv - o)(Xt - o)^T`` of a fold (o: the training mean), cut from
        the kernel of all rows: with ``r = K_tt 1 / n_t`` and ``s = K_vt 1 / n_t`` they are
        ``K_tt - r 1^T - 1 r^T + mean(r)`` and ``K_vt - s 1^T - 1 r^T + mean(r)`` (no ``n^2 p`` product per fold).
        """
        K = self.weighted_kernel(gamma)
        k_train = K[split.train][:, split.train]
        k_val = K[split.val][:, split.train]
        del K
        if self.center:
            r = k_train.mean(1)
            m = r.mean()
            k_train.sub_(r[:, None]).sub_(r[None, :]).add_(m)
            k_val.sub_(k_val.mean(1, keepdim=True)).sub_(r[None, :]).add_(m)
        return k_train, k_val

    def full_basis(self, gamma: torch.Tensor) -> _Basis:
        """Eigen-basis of all rows (for the refit)."""
        if self.primal:
            s = self.feature_scale(gamma)
            lam, V = self.eigh(s[:, None] * self.gram * s[None, :])
            return _Basis(lam, (s[:, None] * V).float(), None, None)
        lam, U = self.eigh(self.weighted_kernel(gamma))
        return _Basis(lam, U.float(), None, None)

    def targets(self, Yc: torch.Tensor, fold: int | None = None) -> tuple[list[_Targets], torch.Tensor | None]:
        """Fold targets of a centred voxel batch (every fold, or the dual form's fold ``fold`` only), and
        ``Xc^T Yc`` in the primal form.

        When the validation folds partition the samples (K-fold), ``Xc^T Yc`` is the sum of the folds'
        ``Xv^T Yv``, so the ``n x p x n_voxels`` product is not done a second time.
        """
        splits = self.splits if fold is None else [self.splits[fold]]
        Yvs = [_rows(Yc, s.val) for s in splits]
        XvtYv = [_rows(self.Xc, s.val).T @ Yv for s, Yv in zip(splits, Yvs)] if self.primal else None
        XtY = None
        if self.primal:
            XtY = sum(XvtYv[1:], XvtYv[0].clone()) if self.partition else self.Xc.T @ Yc
        out = []
        for k, (split, Yv) in enumerate(zip(splits, Yvs)):
            n_train, n_val = len(split.train), len(split.val)
            y_mean_val = Yv.sum(0, dtype=torch.float64) / n_val
            Yv0 = Yv - y_mean_val.float()
            sst = torch.linalg.vector_norm(Yv0, dim=0).double().square()
            if self.center and split.complement:
                intercept = -y_mean_val * (n_val / n_train)  # Yc is centred
            elif self.center:
                intercept = Yc[split.train].sum(0, dtype=torch.float64) / n_train
            else:
                intercept = torch.zeros_like(y_mean_val)
            if self.primal:
                W = XvtYv[k]
                Z = XtY - W if split.complement else self.Xc[split.train].T @ Yc[split.train]
                # (Xt - o)^T (Yt - c) = Xt^T Yt - n_train o c^T (o, c are the training means, or 0)
                Z.addr_(split.offset.float(), intercept.float(), alpha=-n_train)
                W.addr_(split.x_mean_val.float(), y_mean_val.float(), alpha=-n_val)  # Xv^T (Yv - mean)
            else:
                Z = Yc[split.train] - intercept.float()
                W = Yv0
            out.append(_Targets(Z, W, sst, y_mean_val - intercept, n_val, y_mean_val))
        return out, XtY

    def refit(self, basis: _Basis, gamma: torch.Tensor, Yc: torch.Tensor, XtY: torch.Tensor | None, alphas):
        """Coefficients (p, vb) on all rows, one alpha per voxel, float32."""
        scale = (1.0 / (basis.lam[:, None] + alphas[None, :])).float()
        if self.primal:  # S V diag(1/(lam+a)) V^T S X^T Y
            return basis.left @ (scale * (basis.left.T @ XtY))
        dual = basis.left @ (scale * (basis.left.T @ Yc))  # (K_gamma + a)^-1 Y on the kernel's range
        return self.feature_scale(gamma).square().float()[:, None] * (self.Xc.T @ dual)


def _check_fits(n: int, p: int, n_spaces: int, n_splits: int, primal: bool, device: torch.device) -> None:
    """Raise a clear error when the per-split Grams (primal) or kernels (dual) cannot fit in memory."""
    # dual: the kernels of all rows, and one fold's training kernel, eigenvectors and validation kernel at a time
    blocks = (2 * n_splits + 1) * p * p if primal else (n_spaces + 3) * n * n
    need = 8 * blocks + (12 if primal else 4) * n * p
    if need > free_memory(device):
        raise ConfigError(
            "the design is too large for the memory of the device",
            expected=f"about {need / 2**30:.1f} GiB free on {device} for {n} samples x {p} features",
            found=f"{free_memory(device) / 2**30:.1f} GiB free",
            fix="reduce the features (e.g. PCA) or samples, use fewer folds, or use a device with more memory",
        )


def _rows(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``data[idx]``, as a view when ``idx`` is a contiguous increasing range (e.g. a KFold validation fold)."""
    start = int(idx[0])
    if bool((idx == torch.arange(start, start + len(idx), device=idx.device)).all()):
        return data[start : start + len(idx)]
    return data[idx]


def _kernel(X: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """``X X^T`` in float64 from float32 ``X``, summed over column chunks (float64 memory: the kernel only)."""
    K = X.new_zeros(X.shape[0], X.shape[0], dtype=torch.float64)
    for start in range(0, X.shape[1], chunk):
        block = X[:, start : start + chunk].double()
        K.addmm_(block, block.T)
    return K


def _eigh_truncated(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a float64 Gram matrix without its numerically-zero directions.

    Always float64: in float32 (3x faster) the CV scores of features whose spectrum decays over decades (pooled
    network activations) move by up to 5e-3 and 2% of the chosen alphas change (measured on ViT-B-32 features;
    ``test_decaying_spectrum_like_network_features_matches_direct``).
    """
    lam, vecs = torch.linalg.eigh(gram)
    rel = gram.shape[0] * torch.finfo(torch.float64).eps
    keep = lam > max(float(lam[-1]), 0.0) * rel
    if not bool(keep.any()):  # all-zero features: one harmless direction keeps the shapes valid
        keep[-1] = True
        lam = lam.clamp_min(1.0)
    return lam[keep], vecs[:, keep]


def _fold_bases(design: _Design, gamma: torch.Tensor, alphas: torch.Tensor, bar: bool = False) -> list[_Basis]:
    """The fold bases of one gamma, one after the other (each eigen-problem uses every thread; side by side they
    would fight over OpenMP's thread pool)."""
    splits = progress(design.splits, desc="ridge: fold decompositions", enabled=bar)
    return [design.fold_basis(s, gamma, alphas) for s in splits]


def _fold_scorer(design: _Design, split: _Split, gamma: torch.Tensor, alphas: torch.Tensor, n_voxels: int):
    """Dual form: the fold's :class:`~braincode.encoding._smoother.Smoother` where it is the cheaper (and its
    Cholesky factors exist), else its eigen-basis; both give the validation moments of every alpha."""
    if not design.primal and smoother_is_cheaper(len(split.train), len(split.val), len(alphas), n_voxels):
        with cpu_threads(design.threads, alphas.device):
            smoother = Smoother.build(*design.fold_kernels(split, gamma), alphas)
        if smoother is not None:
            return smoother
    return design.fold_basis(split, gamma, alphas)


def _fold_scorers(design: _Design, gamma: torch.Tensor, alphas: torch.Tensor, n_voxels: int, bar: bool):
    """``(alphas, groups)`` pairs: a slice of the alphas, and groups of ``(fold, scorer)`` pairs for those alphas
    whose members are in memory together (and share each voxel batch).

    When the folds partition the samples and smoothers are the cheaper scorers, every fold's smoothers come from
    one inverse per alpha (:func:`~braincode.encoding._partition.partition_smoothers`), as many alphas at a time as
    :data:`~braincode.encoding._memory.MAX_SMOOTHER_BYTES` (or half the free memory) holds: one group of all folds;
    else one slice of all alphas whose scorers are built one fold at a time (:func:`_fold_scorer`)."""
    splits = design.splits
    sizes = [(len(s.train), len(s.val)) for s in splits]

    def per_fold(chunk: slice) -> Iterator:
        groups = ([(k, _fold_scorer(design, s, gamma, alphas[chunk], n_voxels))] for k, s in enumerate(splits))
        return progress(groups, desc="ridge: folds (decomposition, voxel batches)", total=len(splits), enabled=bar)

    if not (
        design.partition
        and not design.primal
        and partition_is_cheaper(sizes)
        and all(smoother_is_cheaper(t, v, len(alphas), n_voxels) for t, v in sizes)
    ):
        yield slice(0, len(alphas)), per_fold(slice(None))
        return
    per_alpha = 4 * sum(t * v for t, v in sizes)
    budget = min(MAX_SMOOTHER_BYTES, MEMORY_SHARE * free_memory(alphas.device))
    n_chunks = -(-len(alphas) // int(max(1, min(len(alphas), budget // per_alpha))))
    bounds = [i * len(alphas) // n_chunks for i in range(n_chunks + 1)]  # chunks of equal size, give or take one
    folds = [(s.train, s.val) for s in splits]
    for chunk in (slice(a, b) for a, b in pairwise(bounds)):
        with cpu_threads(design.threads, alphas.device):
            chunk_alphas = progress(alphas[chunk].tolist(), desc="ridge: inverses per alpha", enabled=bar)
            smoothers = partition_smoothers(design.weighted_kernel(gamma), folds, chunk_alphas, design.center)
        if smoothers is None:  # an alpha too small for the kernel of all rows: fold by fold
            yield chunk, per_fold(chunk)
            continue
        yield chunk, [list(enumerate(smoothers))]
        del smoothers


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
    a = alphas.detach().cpu() if torch.is_tensor(alphas) else torch.as_tensor(np.asarray(alphas, dtype=float))
    a = a.double().ravel()
    if a.numel() == 0 or not bool(torch.isfinite(a).all()) or bool((a <= 0).any()):
        raise ConfigError(
            "alphas must be positive finite numbers",
            expected="a non-empty list of alphas > 0, e.g. numpy.logspace(-2, 6, 10)",
            found=f"{a.tolist()[:10]}",
        )
    return torch.unique(a)  # sorted ascending


def as_tensor(data: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A tensor sharing memory with ``data`` when possible (read-only arrays too: the solvers write only to an ``X``
    passed with ``copy_X=False``, and :func:`ridge_cv` copies a read-only one).

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


def _check_inputs(Xs: Sequence[torch.Tensor], Y: torch.Tensor, splits: Splits, score: str) -> None:
    if score not in SCORES:
        raise ConfigError("unknown score", expected=f"one of {SCORES}", found=repr(score))
    shapes = [tuple(x.shape) for x in Xs]
    if not Xs or any(x.ndim != 2 or x.shape[0] != Y.shape[0] for x in Xs) or Y.ndim != 2:
        raise DataFormatError(
            "features and responses do not match",
            expected="features of shape (n_samples, n_features) and Y of shape (n_samples, n_voxels)",
            found=f"features {shapes} and Y {tuple(Y.shape)}",
        )
    for k, (tr, va) in enumerate(splits):
        if len(tr) == 0 or len(va) == 0:
            raise ConfigError(
                f"cross-validation split {k} has an empty training or validation set",
                expected="non-empty train and validation indices",
                found=f"{len(tr)} and {len(va)} samples",
                fix="use fewer folds or more samples",
            )


def _bytes_per_voxel(design: _Design, n_alphas: int, rank: int, within: int, cached_splits: int) -> int:
    """Memory one more voxel in a batch costs: responses, fold targets, float64 scoring temporaries and sums."""
    n, p = design.n, design.p
    target_rows = 2 * p if design.primal else n
    return 4 * (3 * n + 2 * p + cached_splits * target_rows) + 8 * (6 * rank + within + 8 * n_alphas)


@dataclass
class BandedRidgeCVResult:
    """What :func:`banded_ridge_cv` returns (CPU tensors).

    Attributes
    ----------
    coef : Tensor of shape (n_features, n_voxels), float32
        Weights on the unscaled, concatenated features.
    intercept : Tensor of shape (n_voxels,), float32
    best_alphas : Tensor of shape (n_voxels,), float64
    best_gammas : Tensor of shape (n_spaces, n_voxels), float64
        Each voxel's feature-space weights (on the simplex); space k's penalty is ``alpha / gamma_k``.
    cv_scores : Tensor of shape (n_voxels,), float64
        Mean over folds of the chosen (gamma, alpha)'s score.
    cv_r, cv_r2 : Tensor of shape (n_voxels,), float64
        Pearson r and R^2 of the out-of-fold predictions at each voxel's chosen (gamma, alpha), over all
        validation rows together; NaN for a voxel whose responses are constant.
    oof : Tensor of shape (n_samples, n_voxels), float32, or None
        Those out-of-fold predictions (with ``keep_oof=True``).
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    best_alphas: torch.Tensor
    best_gammas: torch.Tensor
    cv_scores: torch.Tensor
    cv_r: torch.Tensor
    cv_r2: torch.Tensor
    oof: torch.Tensor | None = None


def _search(
    Xs: Sequence[torch.Tensor],
    Y: torch.Tensor,
    alphas: torch.Tensor,
    splits: Splits,
    gammas: torch.Tensor,
    *,
    score: str,
    fit_intercept: bool,
    device: torch.device,
    voxel_batch: int | None,
    show_progress: bool,
    keep_oof: bool,
    copy_X: bool = True,
) -> BandedRidgeCVResult:
    """Grid over (gamma, alpha) for every voxel, then one refit per voxel with its best pair."""
    design = _Design(Xs, splits, fit_intercept, device, copy=copy_X)
    if keep_oof and not design.partition:
        raise ConfigError(
            "out-of-fold predictions need validation folds that partition the samples",
            expected="a K-fold splitter (each sample in exactly one validation fold)",
            found=f"{len(design.splits)} splits that do not partition {design.n} samples",
            fix="use cv=K or KFold, or keep_oof=False",
        )
    n, v = design.n, Y.shape[1]
    alphas_dev = alphas.to(device)
    gammas_dev = gammas.to(device, torch.float64)
    n_candidates = len(gammas)
    out = BandedRidgeCVResult(
        coef=torch.empty(v, design.p, dtype=torch.float32).T,  # (p, v) view of (v, p): coef_ is contiguous
        intercept=torch.empty(v, dtype=torch.float32),
        best_alphas=torch.empty(v, dtype=torch.float64),
        best_gammas=torch.empty(len(design.sizes), v, dtype=torch.float64),
        cv_scores=torch.empty(v, dtype=torch.float64),
        cv_r=torch.empty(v, dtype=torch.float64),
        cv_r2=torch.empty(v, dtype=torch.float64),
        oof=torch.empty(n, v, dtype=torch.float32) if keep_oof else None,
    )
    y_means = torch.empty(v, dtype=torch.float64)

    def batch_size(bases: list[_Basis] | list[Smoother]) -> int:
        if isinstance(bases[0], Smoother):  # responses and fold targets, the predictions, the score sums
            rank, per_voxel = n, 8 * n + bases[0].bytes_per_voxel() + 64 * len(alphas)
        else:
            rank = max(int(b.lam.numel()) for b in bases)
            within = max(b.quad.within_rows for b in bases)
            per_voxel = _bytes_per_voxel(design, len(alphas), rank, within, len(bases))
        batch = voxel_batch_size(v, per_voxel, 0, device, voxel_batch, cap=n_candidates == 1)
        logger.debug(
            "ridge: %s form, n=%d p=%d v=%d, %d spaces, %d gammas, %d alphas, %d splits, rank %d, batch %d",
            "primal" if design.primal else "dual", n, design.p, v, len(design.sizes), n_candidates, len(alphas),
            len(design.splits), rank, batch,
        )
        return batch

    if not design.primal and n_candidates == 1:
        # dual ridge: the refit solves K + alpha I by one float64 Cholesky factor per chosen alpha (no
        # eigen-decomposition of all rows, the largest one); without out-of-fold predictions, one fold's basis
        # at a time is in memory (the folds' r x r matrices are the largest objects at this size)
        if keep_oof:
            batch = _search_by_batch(design, Y, alphas_dev, gammas_dev, batch_size, score=score,
                                     fit_intercept=fit_intercept, bar=show_progress, out=out, y_means=y_means,
                                     refit=None)
        else:
            batch = _search_by_fold(design, Y, alphas_dev, gammas_dev[0], batch_size, score=score,
                                    fit_intercept=fit_intercept, bar=show_progress, out=out, y_means=y_means)
        _refit_by_alpha(design, Y, out, y_means, batch, show_progress)
        return out
    full_basis = lru_cache(maxsize=FULL_BASIS_CACHE)(
        lambda g: design.full_basis(torch.tensor(g, dtype=torch.float64, device=device))
    )
    _search_by_batch(design, Y, alphas_dev, gammas_dev, batch_size, score=score, fit_intercept=fit_intercept,
                     bar=show_progress, out=out, y_means=y_means, refit=full_basis)
    return out


def _centred_batch(Y: torch.Tensor, cols: slice, fit_intercept: bool, device: torch.device):
    """Voxels ``cols`` of ``Y`` on ``device`` in float32, centred (a copy), and their float64 means."""
    Yc = Y[:, cols].to(device, torch.float32, copy=True)
    y_mean = Yc.mean(0, dtype=torch.float64) if fit_intercept else Yc.new_zeros(Yc.shape[1]).double()
    if fit_intercept:
        Yc.sub_(y_mean.float())
    return Yc, y_mean


def _search_by_batch(design, Y, alphas, gammas, batch_size, *, score, fit_intercept, bar, out, y_means, refit):
    """Every fold's basis of the first gamma in memory; per voxel batch, all folds and gammas, then the refit
    from ``refit`` (a cached full-data basis per gamma; None: left to the caller). Returns the batch size."""
    v, device = Y.shape[1], alphas.device
    first = _fold_bases(design, gammas[0], alphas, bar=bar)
    batch = batch_size(first)
    starts = range(0, v, batch)
    for start in progress(starts, desc="ridge: voxel batches", total=len(starts), enabled=bar):
        cols = slice(start, min(start + batch, v))
        Yc, y_mean = _centred_batch(Y, cols, fit_intercept, device)
        targets, XtY = design.targets(Yc)
        top, top_gamma, top_alpha, sums = _best_per_voxel(
            design, first, gammas, alphas, targets, score, bar and len(gammas) > 1
        )
        winners = gammas[top_gamma]  # (vb, n_spaces)
        y_means[cols] = y_mean.cpu()
        if refit is not None:
            W = _refit_batch(design, refit, winners, alphas[top_alpha], Yc, XtY)
            out.coef[:, cols] = W.cpu()
            out.intercept[cols] = (y_mean - design.mean @ W.double()).float().cpu()
        out.best_alphas[cols] = alphas[top_alpha].cpu()
        out.best_gammas[:, cols] = winners.T.cpu()
        out.cv_scores[cols] = top.cpu()
        cv_r, cv_r2 = sums.scores()
        out.cv_r[cols], out.cv_r2[cols] = cv_r.cpu(), cv_r2.cpu()
        if out.oof is not None:
            pred = _oof_predictions(design, first, gammas, alphas, top_gamma, top_alpha, targets)
            out.oof[:, cols] = pred.add_(y_mean.float()).cpu()
    return batch


def _search_by_fold(design, Y, alphas, gamma, batch_size, *, score, fit_intercept, bar, out, y_means) -> int:
    """The folds' scorers of some alphas in memory at a time (:func:`_fold_scorers`), in groups of folds that share
    each voxel batch: every batch adds the group's scores and out-of-fold sums; then each voxel's alpha. Returns
    the batch size."""
    v, device, n_folds = Y.shape[1], alphas.device, len(design.splits)
    total = torch.zeros(len(alphas), v, dtype=torch.float64, device=device)
    sums = OutOfFold.zeros(len(alphas), v, device)
    batch = 0
    for chunk, groups in _fold_scorers(design, gamma, alphas, v, bar):
        first = chunk.start == 0  # the responses' sums and means are taken once
        for group in groups:
            batch = batch or batch_size([basis for _, basis in group])
            starts = range(0, v, batch)
            for start in progress(starts, desc="ridge: voxel batches", enabled=bar and len(group) > 1):
                cols = slice(start, min(start + batch, v))
                Yc, y_mean = _centred_batch(Y, cols, fit_intercept, device)
                y_means[cols] = y_mean.cpu()
                for k, basis in group:
                    (t,), _ = design.targets(Yc, fold=k)
                    moments = basis.moments(t)
                    total[chunk, cols] += fold_score(*moments, t, score)
                    sums.columns(cols, chunk).add(*moments, t, responses=first)
            del group
    sums.count = sum(len(split.val) for split in design.splits)
    mean = total / n_folds
    idx = select_alphas(mean)
    out.best_alphas[:] = alphas[idx].cpu()
    out.best_gammas[:] = gamma[:, None].cpu()
    out.cv_scores[:] = mean.gather(0, idx[None])[0].cpu()
    cv_r, cv_r2 = sums.pick(idx).scores()
    out.cv_r[:], out.cv_r2[:] = cv_r.cpu(), cv_r2.cpu()
    return batch


def _refit_by_alpha(
    design: _Design, Y: torch.Tensor, out: BandedRidgeCVResult, y_means: torch.Tensor, batch: int, bar: bool
) -> None:
    """Dual refit ``X^T (K + alpha I)^-1 (Y - mean)``, one float64 Cholesky factor per distinct chosen alpha (in the
    kernel's own buffer on the CPU), the voxels of that alpha in batches (fills ``out.coef`` and ``out.intercept``).
    """
    device = design.Xc.device
    # per voxel: its responses (float32), centred and solved in place (float64), the solution in float32, and its
    # coefficients
    batch = min(batch, voxel_batch_size(len(out.best_alphas), 16 * design.n + 4 * design.p, 0, device))
    coef_rows = out.coef.T  # (v, p), contiguous
    # the intercept's mean . coef is (Xc mean) . dual: one float64 product of the features, not one per voxel
    x_mean = torch.zeros(design.n, dtype=torch.float64, device=device)
    for start in range(0, design.p, 2048):
        x_mean += design.Xc[:, start : start + 2048].double() @ design.mean[start : start + 2048]
    alphas = torch.unique(out.best_alphas).tolist()
    factors = shifted_factors(design.kernels[0], alphas, check_errors=True)  # one n x n factor at a time
    for alpha in progress(alphas, desc="ridge: refit per alpha", enabled=bar):
        chol, _ = next(factors)
        idx = torch.nonzero(out.best_alphas == alpha).flatten()
        for start in range(0, len(idx), batch):
            sel = idx[start : start + batch]
            rows = Y.T[sel].to(device, torch.float64).sub_(y_means[sel].to(device)[:, None])  # (vb, n)
            dual = chol.solve_rows(rows, overwrite=True)
            coef_rows[sel] = (dual.float() @ design.Xc).cpu()
            out.intercept[sel] = (y_means[sel] - (dual @ x_mean).cpu()).float()
        del chol
    factors.close()  # the kernel is whole again


def _best_per_voxel(
    design: _Design,
    first: list[_Basis],
    gammas: torch.Tensor,
    alphas: torch.Tensor,
    targets: list[_Targets],
    score: str,
    show_progress: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, OutOfFold]:
    """Best mean CV score of each voxel of a batch, the indices of its gamma and alpha, and the out-of-fold sums
    at that (gamma, alpha)."""
    vb = targets[0].sst.shape[0]
    top = torch.full((vb,), -torch.inf, dtype=torch.float64, device=alphas.device)
    top_gamma = torch.zeros(vb, dtype=torch.long, device=alphas.device)
    top_alpha = torch.zeros(vb, dtype=torch.long, device=alphas.device)
    kept = None
    for g in progress(range(len(gammas)), desc="ridge: feature-space weights", enabled=show_progress):
        bases = first if g == 0 else _fold_bases(design, gammas[g], alphas)
        sums = OutOfFold.zeros(len(alphas), vb, alphas.device)
        total = torch.zeros(len(alphas), vb, dtype=torch.float64, device=alphas.device)
        for basis, t in zip(bases, targets):
            moments = basis.moments(t)
            total += fold_score(*moments, t, score)
            sums.add(*moments, t)
        mean = total / len(targets)
        a_idx = select_alphas(mean)
        chosen = mean.gather(0, a_idx[None]).squeeze(0)
        better = chosen > top + TIE_TOL  # ties keep the earlier gamma (the uniform one comes first)
        top = torch.where(better, chosen, top)
        top_gamma = torch.where(better, g, top_gamma)
        top_alpha = torch.where(better, a_idx, top_alpha)
        kept = sums.pick(a_idx) if kept is None else sums.pick(a_idx).where(better[None], kept)
    return top, top_gamma, top_alpha, kept


def _oof_predictions(design, first, gammas, alphas, top_gamma, top_alpha, targets) -> torch.Tensor:
    """Out-of-fold predictions (n_samples, vb) in centred units at each voxel's chosen gamma and alpha."""
    pred = torch.empty(design.n, len(top_gamma), dtype=torch.float32, device=alphas.device)
    for g in torch.unique(top_gamma).tolist():
        sel = torch.nonzero(top_gamma == g).flatten()
        bases = first if g == 0 else _fold_bases(design, gammas[g], alphas)
        chosen = alphas[top_alpha[sel]]
        for basis, split, t in zip(bases, design.splits, targets):
            scale = (1.0 / (basis.lam[:, None] + chosen[None, :])).float()
            A = (design.Xc[split.val] - split.offset.float()) @ basis.left if design.primal else basis.right
            fold = A @ (scale * (basis.left.T @ t.Z[:, sel])) + (t.y_mean - t.delta)[sel].float()
            pred[split.val[:, None], sel[None, :]] = fold
    return pred


def _refit_batch(design, full_basis, winners, alphas, Yc, XtY) -> torch.Tensor:
    """Coefficients (p, vb) of a voxel batch: one refit per distinct winning gamma (rows of ``winners``)."""
    distinct, which = torch.unique(winners, dim=0, return_inverse=True)
    if len(distinct) == 1:
        return design.refit(full_basis(tuple(distinct[0].tolist())), distinct[0], Yc, XtY, alphas)
    W = torch.empty(design.p, Yc.shape[1], dtype=torch.float32, device=Yc.device)
    for k, gamma in enumerate(distinct):
        sel = torch.nonzero(which == k).flatten()
        part_XtY = None if XtY is None else XtY[:, sel]
        W[:, sel] = design.refit(full_basis(tuple(gamma.tolist())), gamma, Yc[:, sel], part_XtY, alphas[sel])
    return W


def ridge_cv(
    X: torch.Tensor | np.ndarray,
    Y: torch.Tensor | np.ndarray,
    alphas: Sequence[float] | np.ndarray | torch.Tensor,
    splits: Splits | str,
    *,
    score: str = "r2",
    fit_intercept: bool = True,
    device: str | torch.device = "auto",
    voxel_batch: int | None = None,
    show_progress: bool = True,
    keep_oof: bool = False,
    copy_X: bool = True,
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
    splits : sequence of (train_indices, validation_indices), or "loo"
        ``"loo"``: efficient leave-one-out (:mod:`braincode.encoding._loo`): one float64 eigen-decomposition of
        all samples gives every sample's held-out prediction for every alpha; the scores are those of the
        leave-one-out predictions.
    score : {"r2", "pearson"}
        Validation score that selects alphas.
    fit_intercept : bool
        Centre X and Y (per training fold, and for the refit) like :class:`sklearn.linear_model.Ridge`.
    device : {"auto", "cpu", "cuda"} or torch.device
    voxel_batch : int, optional
        Voxels per batch; by default as many as fit in half the free memory (at most 16384).
    show_progress : bool
        tqdm bars over the decompositions and voxel batches (also off with ``BRAINCODE_PROGRESS=0``).
    keep_oof : bool
        Also return the out-of-fold predictions at the chosen alphas (``n_samples x n_voxels`` float32; the
        splits must partition the samples). Their r and R^2 are returned either way.
    copy_X : bool
        ``False``: K-fold CV may centre a writable float32 ``X`` in place instead of copying it (as scikit-learn's
        ``copy_X``; saves one ``n x p`` float32 copy, e.g. 0.5 GB for an Algonauts subject).

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
    copy_X = copy_X or (isinstance(X, np.ndarray) and not X.flags.writeable)
    X, Y = as_tensor(X), as_tensor(Y)
    if isinstance(splits, str):
        _check_inputs([X], Y, [], score)
        if splits != "loo":
            raise ConfigError("unknown cross-validation", expected='splits or "loo"', found=repr(splits))
        from braincode.encoding._loo import loo_ridge  # same layer; imports this module

        fit = loo_ridge(X, Y, check_alphas(alphas), score=score, fit_intercept=fit_intercept,
                        device=resolve_device(device), voxel_batch=voxel_batch, show_progress=show_progress,
                        keep_oof=keep_oof)
        return RidgeCVResult(**fit)
    _check_inputs([X], Y, splits, score)
    res = _search(
        [X],
        Y,
        check_alphas(alphas),
        splits,
        torch.ones(1, 1, dtype=torch.float64),
        score=score,
        fit_intercept=fit_intercept,
        device=resolve_device(device),
        voxel_batch=voxel_batch,
        show_progress=show_progress,
        keep_oof=keep_oof,
        copy_X=copy_X,
    )
    return RidgeCVResult(res.coef, res.intercept, res.best_alphas, res.cv_scores, res.cv_r, res.cv_r2, res.oof)


def simplex_candidates(
    n_spaces: int, n_iter: int, concentration: Sequence[float] = (0.1, 1.0), random_state: int | None = None
) -> torch.Tensor:
    """Feature-space weights to try: the uniform weights, each single space, then Dirichlet samples.

    Samples cycle through ``concentration`` (small values reach the simplex's edges, 1 covers it evenly).

    Returns
    -------
    Tensor of shape (max(n_iter, n_spaces + 1), n_spaces), float64; rows sum to 1 (one row for one space).

    Examples
    --------
    >>> simplex_candidates(2, 4, random_state=0)[:3].tolist()
    [[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]
    """
    if n_spaces == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    rng = np.random.default_rng(random_state)
    fixed = [np.full(n_spaces, 1.0 / n_spaces), *np.eye(n_spaces)]
    conc = np.resize(np.asarray(concentration, dtype=float), max(n_iter - len(fixed), 0))
    drawn = [rng.dirichlet(np.full(n_spaces, c)) for c in conc]
    return torch.as_tensor(np.array(fixed + drawn), dtype=torch.float64)


def banded_ridge_cv(
    Xs: Sequence[torch.Tensor | np.ndarray],
    Y: torch.Tensor | np.ndarray,
    alphas: Sequence[float] | np.ndarray | torch.Tensor,
    splits: Splits,
    *,
    n_iter: int = 100,
    concentration: Sequence[float] = (0.1, 1.0),
    random_state: int | None = None,
    score: str = "r2",
    fit_intercept: bool = True,
    device: str | torch.device = "auto",
    voxel_batch: int | None = None,
    show_progress: bool = True,
    keep_oof: bool = False,
) -> BandedRidgeCVResult:
    """Banded ridge: one regularisation per feature space, chosen per voxel by cross-validation.

    Feature space k is scaled by ``sqrt(gamma_k)`` with ``gamma`` on the simplex, so its penalty is
    ``alpha / gamma_k``. Every voxel tries the same candidate weights (:func:`simplex_candidates`: uniform,
    each space alone, then Dirichlet samples) with every alpha, keeps the best mean CV score, and is refit with
    that pair. Each candidate costs one eigen-decomposition per fold and, per voxel batch, two ``r x p`` products
    and one float64 ``r x r`` product per fold: the ``n x p x n_voxels`` products are shared by all candidates.

    Parameters
    ----------
    Xs : sequence of Tensor or ndarray, each (n_samples, n_features_k)
    Y : Tensor or ndarray of shape (n_samples, n_voxels)
    alphas : sequence of float
    splits : sequence of (train_indices, validation_indices)
    n_iter : int
        Number of candidate weights (at least the uniform one and each single space).
    concentration : sequence of float
        Dirichlet concentrations, cycled.
    random_state : int, optional
    score, fit_intercept, device, voxel_batch, show_progress, keep_oof
        As in :func:`ridge_cv`.

    Returns
    -------
    BandedRidgeCVResult

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> Xa, Xb = torch.randn(90, 4, generator=g), torch.randn(90, 3, generator=g)
    >>> Y = torch.cat([Xa @ torch.ones(4, 1), Xb @ torch.ones(3, 1)], 1) + 0.1 * torch.randn(90, 2, generator=g)
    >>> splits = [(np.r_[30:90], np.r_[0:30]), (np.r_[0:30, 60:90], np.r_[30:60]), (np.r_[0:60], np.r_[60:90])]
    >>> res = banded_ridge_cv([Xa, Xb], Y, [0.1, 1.0, 10.0], splits, n_iter=10, random_state=0,
    ...                       device="cpu", show_progress=False)
    >>> res.best_gammas.argmax(0).tolist()
    [0, 1]
    """
    Xs = [as_tensor(x) for x in Xs]
    Y = as_tensor(Y)
    _check_inputs(Xs, Y, splits, score)
    if int(n_iter) < 1:
        raise ConfigError("n_iter must be positive", expected="an int >= 1", found=str(n_iter))
    gammas = simplex_candidates(len(Xs), int(n_iter), concentration, random_state)
    return _search(
        Xs,
        Y,
        check_alphas(alphas),
        splits,
        gammas,
        score=score,
        fit_intercept=fit_intercept,
        device=resolve_device(device),
        voxel_batch=voxel_batch,
        show_progress=show_progress,
        keep_oof=keep_oof,
    )
