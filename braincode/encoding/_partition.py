"""Every fold's smoothers from one inverse of ``K + alpha I`` per alpha, when the validation folds partition the
samples (K-fold), for :func:`~braincode.encoding.solvers.ridge_cv`.

With ``H = (K + alpha I)^-1`` of all rows, a fold's training block ``t`` and validation block ``v`` satisfy
``(K_tt + alpha I)^-1 K_tv = -H_tv H_vv^-1`` (the block inverse), so the fold's smoother
``S = K_vt (K_tt + alpha I)^-1 = -H_vv^-1 H_vt``. With an intercept (features centred on each fold's training rows)
the same holds for the kernel bordered by a row and a column of ones, whose inverse is ``G = H - h h^T / (1^T h)``
with ``h = H 1`` (ridge with an unpenalised intercept does not depend on where the features are centred, so the
kernel of all rows serves every fold). One inverse costs ``n^3`` float64 flops (LAPACK ``dpotrf`` and ``dpotri``),
each fold then ``n_val^3 / 3 + 2 n_val^2 n_train``: 1.33 n^3 per alpha for 5 folds, where one Cholesky factor per
fold and alpha (:class:`~braincode.encoding._smoother.Smoother`) costs 2.13 n^3. :func:`partition_is_cheaper`
compares the two.

On the CPU the inverse is computed in the kernel's own buffer (its lower triangle; the strict upper one keeps
``K``), so the only n x n matrix is the kernel itself, as in :func:`~braincode.encoding._smoother.shifted_factors`.
One alpha's smoothers of every fold (float32, ``(n_val, n_train)`` each) are in memory at a time: about
``3.2 n^2`` bytes for 5 folds. Their training columns are in fold order (:class:`FoldOrder`), so that a voxel batch
whose rows are in that order gives every fold's predictions from views, without a copy of its training rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import blas, lapack

from braincode.encoding._smoother import Cholesky, shifted_factors


def partition_is_cheaper(sizes: Sequence[tuple[int, int]]) -> bool:
    """Whether one inverse per alpha (:func:`partition_smoothers`) costs fewer float64 flops than one Cholesky
    factor per fold and alpha, for folds of ``(n_train, n_val)`` rows that partition the samples.

    Examples
    --------
    >>> partition_is_cheaper([(7873, 1968)] * 5)  # 5-fold CV of an Algonauts subject
    True
    >>> partition_is_cheaper([(500, 500)] * 2)  # 2 folds: two small factors cost less than one inverse
    False
    """
    n = float(sizes[0][0] + sizes[0][1])
    per_fold = sum(t**3 / 3 + 2 * t * t * v for t, v in sizes)
    partition = n**3 + sum(v**3 / 3 + 2 * v * v * t for t, v in sizes)
    return partition < per_fold


@dataclass
class SymmetricInverse:
    """``(K + alpha I)^-1``; on the CPU only its lower triangle (rows >= columns) is stored, in place of the
    Cholesky factor."""

    data: torch.Tensor
    lower_only: bool

    @classmethod
    def of(cls, chol: Cholesky) -> SymmetricInverse:
        """The inverse from a factor of :func:`~braincode.encoding._smoother.shifted_factors` (which it consumes on
        the CPU: LAPACK ``dpotri`` overwrites the factor)."""
        if not chol.in_place:
            return cls(torch.cholesky_inverse(chol.factor), False)
        _, info = lapack.dpotri(chol.factor.numpy().T, lower=0, overwrite_c=1)
        if info != 0:
            raise torch.linalg.LinAlgError(f"dpotri: the factor is singular (info {info})")
        return cls(chol.factor, True)

    def block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``H[rows][:, cols]`` as a new float64 matrix."""
        sub = self.data[rows[:, None], cols[None, :]]
        if not self.lower_only:
            return sub
        below = rows[:, None] >= cols[None, :]  # the other entries are read from H[cols, rows]
        return torch.where(below, sub, self.data[cols[None, :], rows[:, None]])

    def row_sums(self) -> torch.Tensor:
        """``H 1``, (n,) float64."""
        if not self.lower_only:
            return self.data.sum(1)
        ones = np.ones(self.data.shape[0])
        return torch.from_numpy(blas.dsymv(1.0, self.data.numpy().T, ones, lower=0))


def fold_smoother(inverse: SymmetricInverse, u: torch.Tensor | None, train: torch.Tensor, val: torch.Tensor):
    """One fold's smoother ``-G_vv^-1 G_vt`` (float64, (n_val, n_train)); ``G = H - u u^T`` with an intercept
    (``u = H 1 / sqrt(1^T H 1)``), else ``H``. ``None`` when ``G_vv`` is not numerically positive-definite."""
    g_vt, g_vv = inverse.block(val, train), inverse.block(val, val)
    if u is not None:
        g_vt.addr_(u[val], u[train], alpha=-1.0)
        g_vv.addr_(u[val], u[val], alpha=-1.0)
    factor, info = torch.linalg.cholesky_ex(g_vv)
    if int(info) != 0:
        return None
    # n_val^3 for the small inverse, then one product: ~10% faster than two triangular solves with n_train columns
    return torch.cholesky_inverse(factor).neg_() @ g_vt


@dataclass
class FoldOrder:
    """The samples in fold order (the validation rows of fold 0, then of fold 1, ...): fold ``k``'s validation rows
    are the block ``bounds[k]:bounds[k + 1]`` and its training rows the two blocks around it, so a voxel batch in
    this order needs no gather per fold."""

    perm: torch.Tensor  # (n,) original index of each row in fold order
    bounds: list[int]  # (n_folds + 1,)

    @classmethod
    def of(cls, vals: Sequence[torch.Tensor]) -> FoldOrder:
        """From validation folds that partition the samples."""
        sizes = [len(v) for v in vals]
        return cls(torch.cat(list(vals)), [sum(sizes[:k]) for k in range(len(vals) + 1)])

    def val(self, k: int) -> torch.Tensor:
        return self.perm[self.bounds[k] : self.bounds[k + 1]]

    def train(self, k: int) -> torch.Tensor:
        """Fold ``k``'s training rows in fold order (original indices)."""
        return torch.cat([self.perm[: self.bounds[k]], self.perm[self.bounds[k + 1] :]])


@dataclass
class FoldSmoothers:
    """One alpha's smoothers of every fold, float32 ``(n_val, n_train)`` each with the training columns in fold
    order, and their row sums ``S 1`` (the intercept's share of the predictions)."""

    order: FoldOrder
    smoothers: list[torch.Tensor]
    row_sums: list[torch.Tensor]

    def predictions(self, Yp: torch.Tensor, k: int, intercept: torch.Tensor) -> torch.Tensor:
        """Fold ``k``'s validation predictions ``S (Y_t - c)`` of a voxel batch ``Yp`` (n, vb) in fold order, for
        fold intercepts ``c`` (vb,): (vb, n_val) float32, two products on views (no copy of the training rows)."""
        lo, hi = self.order.bounds[k], self.order.bounds[k + 1]
        S = self.smoothers[k]
        pred = torch.outer(intercept.float(), self.row_sums[k]).neg_()
        if lo:
            pred.addmm_(Yp[:lo].T, S[:, :lo].T)
        if hi < len(Yp):
            pred.addmm_(Yp[hi:].T, S[:, lo:].T)
        return pred


def partition_smoothers(
    kernel: torch.Tensor, order: FoldOrder, alphas: Iterable[float], intercept: bool
) -> Iterator[FoldSmoothers | None]:
    """The :class:`FoldSmoothers` of each alpha in turn (folds that partition the rows of ``kernel``, float64 n x n),
    from one inverse of ``kernel + alpha I`` per alpha; ``None`` (and the end) when a factor fails (an alpha too
    small for the kernel's rounding errors). Use each before asking for the next; the kernel is whole again when
    the iteration ends or is closed.

    Examples
    --------
    >>> X = torch.randn(6, 8, dtype=torch.float64)
    >>> order = FoldOrder.of([torch.tensor([0, 1]), torch.tensor([2, 3, 4, 5])])
    >>> s = next(partition_smoothers(X @ X.T, order, [1.0], intercept=False))
    >>> Kt = (X @ X.T)[:2][:, :2] + torch.eye(2, dtype=torch.float64)
    >>> direct = torch.linalg.solve(Kt, (X @ X.T)[:2, 2:]).T  # K_vt (K_tt + I)^-1 of the second fold
    >>> bool(torch.allclose(s.smoothers[1].double(), direct, atol=1e-6))
    True
    """
    n_folds = len(order.bounds) - 1
    folds = [(order.train(k), order.val(k)) for k in range(n_folds)]
    with closing(shifted_factors(kernel, list(alphas))) as factors:
        for chol, info in factors:
            if info != 0:
                yield None
                return
            inverse = SymmetricInverse.of(chol)
            if intercept:
                h = inverse.row_sums()
                u = h / h.sum().sqrt()  # 1^T H 1 > 0: H is positive-definite
            else:
                u = None
            smoothers, row_sums = [], []
            for train, val in folds:
                smoother = fold_smoother(inverse, u, train, val)
                if smoother is None:
                    yield None
                    return
                smoothers.append(smoother.float())
                row_sums.append(smoother.sum(1).float())
            del chol, inverse, smoother
            yield FoldSmoothers(order, smoothers, row_sums)
