"""The design of a ridge search (:func:`~braincode.encoding.solvers.ridge_cv`): centred features, the
per-split Grams (primal) or the float64 kernels of all rows (dual), each fold's eigen-basis or centred kernels,
and the fold targets of a voxel batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from braincode.encoding._memory import cpu_threads, free_memory, idle_cores
from braincode.encoding._scoring import Quadratic
from braincode.errors import ConfigError

Splits = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass
class Split:
    """One cross-validation split and the Gram (primal) or kernel (dual) blocks that do not depend on weights."""

    train: torch.Tensor
    val: torch.Tensor
    complement: bool  # train is every sample not in val
    offset: torch.Tensor  # (p,) float64, centring offset of the training rows (0 without intercept)
    x_mean_val: torch.Tensor  # (p,) float64, mean of the validation rows
    gram_train: torch.Tensor | None = None  # primal: (p, p) (Xt - o)^T (Xt - o)
    gram_val: torch.Tensor | None = None  # primal: (p, p) (Xv - o)^T (Xv - o)


@dataclass
class Basis:
    """Eigen-basis of one training set for one set of feature-space weights.

    ``E = left^T Z`` and ``F = right^T W`` with the fold targets ``Z``, ``W`` of :func:`_fold_targets`; primal:
    ``left = right = diag(sqrt(gamma)) V``; dual: ``left = U``, ``right = A``.
    """

    lam: torch.Tensor  # (r,) float64, ascending
    left: torch.Tensor  # float32
    right: torch.Tensor | None  # float32 (None for the full-data basis)
    quad: Quadratic | None

    def moments(self, t: Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The validation moments of every alpha (:meth:`~braincode.encoding._scoring.Quadratic.moments`)."""
        return self.quad.moments(self.left.T @ t.Z, self.right.T @ t.W)


@dataclass
class Targets:
    """Per voxel batch and split: what the scores need from the responses (independent of weights)."""

    Z: torch.Tensor | None  # primal: (Xt - o)^T (Yt - c), (p, vb); dual: Yt - c, (n_train, vb); float32
    W: torch.Tensor  # primal: Xv^T (Yv - mean), (p, vb); dual: Yv - mean, (n_val, vb); float32
    sst: torch.Tensor  # (vb,) float64, validation sum of squares about the validation mean
    delta: torch.Tensor  # (vb,) float64, validation mean minus the fold intercept c
    n_val: int
    y_mean: torch.Tensor  # (vb,) float64, validation mean (of the centred batch)


class Design:
    """Centred features on the device, split into feature spaces, with per-split Grams (primal) or the kernels of
    all rows (dual: each fold's centred kernels are cut from them, see :meth:`fold_kernels`)."""

    def __init__(
        self, Xs: Sequence[torch.Tensor], splits: Splits, center: bool, device: torch.device, copy: bool = True
    ) -> None:
        self.n, self.sizes = Xs[0].shape[0], [x.shape[1] for x in Xs]
        self.p = sum(self.sizes)
        self.primal = self.n >= self.p
        check_fits(self.n, self.p, len(Xs), len(splits), self.primal, device)
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
            self.kernels = [float64_kernel(x) for x in torch.split(self.Xc, self.sizes, 1)]
        self.splits = [self._split(X64, tr, va) for tr, va in splits]
        vals = torch.cat([s.val for s in self.splits])
        self.partition = (
            all(s.complement for s in self.splits)
            and len(vals) == self.n
            and bool((torch.sort(vals).values == torch.arange(self.n, device=device)).all())
        )

    def _split(self, X64: torch.Tensor | None, train: np.ndarray, val: np.ndarray) -> Split:
        dev = self.Xc.device
        train_t = torch.as_tensor(np.asarray(train), dtype=torch.long, device=dev)
        val_t = torch.as_tensor(np.asarray(val), dtype=torch.long, device=dev)
        n_train, n_val = len(train_t), len(val_t)
        complement = n_train + n_val == self.n and not bool(torch.isin(train_t, val_t).any())
        if X64 is None:  # dual: only the means (float64 sums of the float32 rows)
            x_mean_val = self.Xc[val_t].mean(0, dtype=torch.float64)
            offset = self.Xc[train_t].mean(0, dtype=torch.float64) if self.center else torch.zeros_like(x_mean_val)
            return Split(train_t, val_t, complement, offset, x_mean_val)
        Xv = X64[val_t]
        x_mean_val = Xv.mean(0)
        offset = X64[train_t].mean(0) if self.center else torch.zeros_like(x_mean_val)
        split = Split(train_t, val_t, complement, offset, x_mean_val)
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
        """:func:`eigh_truncated` on the threads that are free (:func:`~braincode.encoding._memory.idle_cores`)."""
        with cpu_threads(self.threads, gram.device):
            return eigh_truncated(gram)

    def feature_scale(self, gamma: torch.Tensor) -> torch.Tensor:
        """sqrt(gamma) of each feature's space, (p,) float64."""
        sizes = torch.as_tensor(self.sizes, device=gamma.device)
        return torch.repeat_interleave(torch.sqrt(gamma), sizes)

    def fold_basis(self, split: Split, gamma: torch.Tensor, alphas: torch.Tensor) -> Basis:
        """Eigen-basis of the split's training rows with feature space k scaled by sqrt(gamma_k)."""
        if self.primal:
            s = self.feature_scale(gamma)
            lam, V = self.eigh(s[:, None] * split.gram_train * s[None, :])
            SV = s[:, None] * V
            A_mean = (split.x_mean_val - split.offset) @ SV
            quad = Quadratic.build(lam, SV.T @ split.gram_val @ SV, A_mean, alphas)
            left = SV.float()
            return Basis(lam, left, left, quad)
        k_train, k_val = self.fold_kernels(split, gamma)
        lam, U = self.eigh(k_train)
        del k_train
        A = k_val @ U
        quad = Quadratic.build(lam, A.T @ A, A.mean(0), alphas)
        return Basis(lam, U.float(), A.float(), quad)

    def weighted_kernel(self, gamma: torch.Tensor) -> torch.Tensor:
        """``sum_k gamma_k K_k`` over the feature spaces (the kernel itself for one space of weight 1)."""
        if len(self.kernels) == 1 and float(gamma[0]) == 1.0:
            return self.kernels[0]
        return sum(g * k for g, k in zip(gamma.tolist(), self.kernels))

    def fold_kernels(self, split: Split, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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

    def full_basis(self, gamma: torch.Tensor) -> Basis:
        """Eigen-basis of all rows (for the refit)."""
        if self.primal:
            s = self.feature_scale(gamma)
            lam, V = self.eigh(s[:, None] * self.gram * s[None, :])
            return Basis(lam, (s[:, None] * V).float(), None, None)
        lam, U = self.eigh(self.weighted_kernel(gamma))
        return Basis(lam, U.float(), None, None)

    def targets(self, Yc: torch.Tensor, fold: int | None = None) -> tuple[list[Targets], torch.Tensor | None]:
        """Fold targets of a centred voxel batch (every fold, or the dual form's fold ``fold`` only), and
        ``Xc^T Yc`` in the primal form.

        When the validation folds partition the samples (K-fold), ``Xc^T Yc`` is the sum of the folds'
        ``Xv^T Yv``, so the ``n x p x n_voxels`` product is not done a second time.
        """
        splits = self.splits if fold is None else [self.splits[fold]]
        Yvs = [take_rows(Yc, s.val) for s in splits]
        XvtYv = [take_rows(self.Xc, s.val).T @ Yv for s, Yv in zip(splits, Yvs)] if self.primal else None
        XtY = None
        if self.primal:
            XtY = sum(XvtYv[1:], XvtYv[0].clone()) if self.partition else self.Xc.T @ Yc
        out = []
        for k, (split, Yv) in enumerate(zip(splits, Yvs)):
            n_train, n_val = len(split.train), len(split.val)
            y_mean_val, Yv0, sst = _validation_stats(Yv)
            if self.center and split.complement:
                intercept = _complement_intercept(y_mean_val, n_val, n_train)
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
            out.append(Targets(Z, W, sst, y_mean_val - intercept, n_val, y_mean_val))
        return out, XtY

    def complement_targets(self, Yv: torch.Tensor, n_train: int) -> Targets:
        """Targets of validation rows ``Yv`` of a centred batch whose training rows are all the others, without
        ``Z`` (dual form: the training rows are read from the batch itself, see
        :class:`~braincode.encoding._partition.FoldSmoothers`)."""
        y_mean_val, Yv0, sst = _validation_stats(Yv)
        intercept = _complement_intercept(y_mean_val, len(Yv), n_train) if self.center else 0.0 * y_mean_val
        return Targets(None, Yv0, sst, y_mean_val - intercept, len(Yv), y_mean_val)

    def refit(self, basis: Basis, gamma: torch.Tensor, Yc: torch.Tensor, XtY: torch.Tensor | None, alphas):
        """Coefficients (p, vb) on all rows, one alpha per voxel, float32."""
        scale = (1.0 / (basis.lam[:, None] + alphas[None, :])).float()
        if self.primal:  # S V diag(1/(lam+a)) V^T S X^T Y
            return basis.left @ (scale * (basis.left.T @ XtY))
        dual = basis.left @ (scale * (basis.left.T @ Yc))  # (K_gamma + a)^-1 Y on the kernel's range
        return self.feature_scale(gamma).square().float()[:, None] * (self.Xc.T @ dual)


def centred_batch(
    Y: torch.Tensor, cols: slice | torch.Tensor, fit_intercept: bool, device: torch.device,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxels ``cols`` of ``Y`` on ``device`` in float32, centred (a copy), and their float64 means; with ``rows``
    (and ``cols`` an index tensor), only those rows, in that order."""
    Yc = Y[:, cols] if rows is None else Y[rows[:, None], cols[None, :]]
    Yc = Yc.to(device, torch.float32, copy=rows is None)
    y_mean = Yc.mean(0, dtype=torch.float64) if fit_intercept else Yc.new_zeros(Yc.shape[1]).double()
    if fit_intercept:
        Yc.sub_(y_mean.float())
    return Yc, y_mean


def _validation_stats(Yv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean (float64), centred copy (float32) and sum of squares about the mean (float64) of validation rows."""
    y_mean_val = Yv.sum(0, dtype=torch.float64) / len(Yv)
    Yv0 = Yv - y_mean_val.float()
    return y_mean_val, Yv0, torch.linalg.vector_norm(Yv0, dim=0).double().square()


def _complement_intercept(y_mean_val: torch.Tensor, n_val: int, n_train: int) -> torch.Tensor:
    """Training mean of a centred batch whose training rows are all but the validation ones."""
    return -y_mean_val * (n_val / n_train)


def check_fits(n: int, p: int, n_spaces: int, n_splits: int, primal: bool, device: torch.device) -> None:
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


def take_rows(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``data[idx]``, as a view when ``idx`` is a contiguous increasing range (e.g. a KFold validation fold)."""
    start = int(idx[0])
    if bool((idx == torch.arange(start, start + len(idx), device=idx.device)).all()):
        return data[start : start + len(idx)]
    return data[idx]


def float64_kernel(X: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """``X X^T`` in float64 from float32 ``X``, summed over column chunks (float64 memory: the kernel only)."""
    K = X.new_zeros(X.shape[0], X.shape[0], dtype=torch.float64)
    for start in range(0, X.shape[1], chunk):
        block = X[:, start : start + chunk].double()
        K.addmm_(block, block.T)
    return K


def eigh_truncated(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
