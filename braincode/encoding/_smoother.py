"""Dual ridge validation predictions by direct products, for :func:`~braincode.encoding.solvers.ridge_cv`.

For one training fold with centred kernels ``K_tt`` (train x train) and ``K_vt`` (validation x train), the
validation predictions at ``alpha`` are ``S_alpha Z``, with the fold's *smoother* ``S_alpha = K_vt (K_tt + alpha
I)^-1`` and the centred training responses ``Z``. One float64 Cholesky factor per alpha gives ``S_alpha``
(``n_train^3 / 3 + 2 n_train^2 n_val`` flops); a voxel batch then costs one float32 product
``[S_1; ...; S_m] Z`` for all ``m`` alphas, whose rows are the validation predictions themselves. The scores need
no partial fractions and no eigen-decomposition: the float32 product is as accurate as any prediction
(``S_alpha`` is bounded whatever the conditioning of ``K_tt``, which only the float64 solves see).

The eigen-basis path (:class:`~braincode.encoding._design.Basis`) costs one ``n_train`` eigen-decomposition
(about ``14 n_train^3`` float64 flops on this kind of CPU, measured) plus, per voxel, ``U^T Z`` in float32 and an
``r x r`` float64 product; it is cheaper when the alphas times the validation rows outnumber about three times
the training rows. :func:`smoother_is_cheaper` compares the two (5 folds, 10 alphas, Algonauts size: the smoother
needs about two thirds of the work).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from scipy.linalg import lapack

if TYPE_CHECKING:
    from braincode.encoding._design import Targets

#: float32-flop cost of one float64 flop, and of an eigen-decomposition per ``n^3`` (LAPACK ``syevd`` measured
#: 9.5 s for n = 4,000 at 94 GFLOP/s float64 on 2 EPYC cores: about 14 n^3 float64 flops).
FLOAT64_COST, EIGH_N3 = 2.0, 14.0


def smoother_is_cheaper(n_train: int, n_val: int, n_alphas: int, n_voxels: int) -> bool:
    """Whether :class:`Smoother` costs less than the eigen-basis path for one fold (modelled flops).

    Examples
    --------
    >>> smoother_is_cheaper(7873, 1968, 10, 39548)  # 5-fold CV of an Algonauts subject, 10 alphas
    True
    >>> smoother_is_cheaper(7873, 1968, 40, 39548)  # many alphas: one eigen-basis serves them all
    False
    """
    t, v = float(n_train), float(n_val)
    direct = FLOAT64_COST * n_alphas * (t**3 / 3 + 2 * t * t * v) + 2 * n_alphas * v * t * n_voxels
    basis_build = FLOAT64_COST * (EIGH_N3 * t**3 + 4 * v * t * t)  # eigh, then A = K_vt U and A^T A
    eigen = basis_build + (2 + 2 * FLOAT64_COST) * t * t * n_voxels + 2 * t * v * n_voxels
    return direct < eigen


def _mirror_upper(kernel: torch.Tensor, block: int = 2048) -> None:
    """Copy the strict upper triangle of a square ``kernel`` onto its strict lower triangle, in place, a block of
    rows at a time (no n x n temporary)."""
    for i0 in range(0, kernel.shape[0], block):
        i1 = min(i0 + block, kernel.shape[0])
        kernel[i0:i1, :i0] = kernel[:i0, i0:i1].T
        tile = kernel[i0:i1, i0:i1]
        tile.copy_(torch.triu(tile) + torch.triu(tile, 1).T)


@dataclass
class Cholesky:
    """A Cholesky factor of ``K + alpha I``. On the CPU the factor is LAPACK's, in the lower triangle of the kernel's
    own buffer (``dpotrf`` on the column-major view, in place): the strict upper triangle still holds ``K``."""

    factor: torch.Tensor
    in_place: bool

    def solve_rows(self, rows: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        """``(K + alpha I)^-1`` applied to each row of ``rows`` (m, n) float64; the solutions as rows. With
        ``overwrite`` a C-contiguous ``rows`` on the CPU receives them (``dpotrs`` in place: no second m x n
        buffer)."""
        if not self.in_place:
            return torch.cholesky_solve(rows.T, self.factor).T
        rows = rows.contiguous() if overwrite else rows.clone(memory_format=torch.contiguous_format)
        _, info = lapack.dpotrs(self.factor.numpy().T, rows.numpy().T, lower=0, overwrite_b=1)
        if info != 0:
            raise ValueError(f"dpotrs: illegal argument {-info}")
        return rows


def shifted_factors(
    kernel: torch.Tensor, alphas: Sequence[float], check_errors: bool = False
) -> Iterator[tuple[Cholesky, int]]:
    """A :class:`Cholesky` factor of ``kernel + alpha I`` for each alpha in turn, with LAPACK's ``info`` (0: the
    factor exists). No second n x n matrix on the CPU: ``K + alpha I`` is factored in the kernel's own buffer, its
    strict upper triangle keeping ``K`` (other devices: one torch factor beside the kernel). The kernel is whole
    again when the iteration ends or stops (its lower triangle mirrored from the upper one); use each factor before
    asking for the next.

    Examples
    --------
    >>> K = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> ones = torch.ones(1, 2, dtype=torch.float64)
    >>> [chol.solve_rows(ones).round(decimals=12).tolist() for chol, _ in shifted_factors(K, [1.0, 2.0])]
    [[[0.25, 0.25]], [[0.2, 0.2]]]
    >>> K.tolist()
    [[2.0, 1.0], [1.0, 2.0]]
    """
    diagonal = kernel.diagonal().clone()
    in_place = kernel.device.type == "cpu" and kernel.dtype == torch.float64 and kernel.is_contiguous()
    factored = False
    try:
        for alpha in alphas:
            if factored:
                _mirror_upper(kernel)
            kernel.diagonal().copy_(diagonal).add_(alpha)
            if in_place:
                factored = True
                _, info = lapack.dpotrf(kernel.numpy().T, lower=0, clean=0, overwrite_a=1)
                chol = Cholesky(kernel, True)
            else:
                factor, info = torch.linalg.cholesky_ex(kernel)
                chol = Cholesky(factor, False)
            if check_errors and int(info) != 0:
                raise torch.linalg.LinAlgError(
                    f"K + {alpha:g} I is not positive-definite (leading minor of order {int(info)})"
                )
            yield chol, int(info)
            del chol
    finally:
        if factored:
            _mirror_upper(kernel)
        kernel.diagonal().copy_(diagonal)


@dataclass
class Smoother:
    """The stacked smoothers ``[S_1; ...; S_m]`` of one fold, float32 of shape (n_alphas * n_val, n_train)."""

    stacked: torch.Tensor
    n_alphas: int

    @classmethod
    def build(cls, k_train: torch.Tensor, k_val: torch.Tensor, alphas: torch.Tensor) -> Smoother | None:
        """From the fold's centred float64 kernels (:func:`shifted_factors`); ``None`` when a Cholesky factor fails
        (an alpha too small for the rounding errors of ``K_tt``: the caller falls back to the eigen-basis path)."""
        n_val, n_train = k_val.shape
        stacked = k_val.new_empty(len(alphas) * n_val, n_train, dtype=torch.float32)
        for i, (chol, info) in enumerate(shifted_factors(k_train, alphas.tolist())):
            if info != 0:
                return None
            # S = K_vt (K_tt + a I)^-1: its rows solve against the rows of K_vt (K_tt is symmetric)
            stacked[i * n_val : (i + 1) * n_val] = chol.solve_rows(k_val)
        return cls(stacked, len(alphas))

    def bytes_per_voxel(self) -> int:
        """Working memory of one more voxel in a batch: its predictions for every alpha, one alpha's products."""
        n_val = self.stacked.shape[0] // self.n_alphas
        return 4 * self.stacked.shape[0] + 8 * n_val

    def moments(self, t: Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mean(P_a)``, ``<Yv0, P_a>`` and ``||P_a||^2`` (each (n_alphas, n_voxels), float64) of the validation
        predictions ``P_a`` in centred units, as :meth:`~braincode.encoding._scoring.Quadratic.moments` gives
        them."""
        n_val = self.stacked.shape[0] // self.n_alphas
        # one row of predictions per voxel: Z^T S^T ran at ~190 GFLOP/s on 2 EPYC cores where S Z fell to ~145
        # at some batch widths (MKL, 6,177 voxels)
        return prediction_moments((t.Z.T @ self.stacked.T).view(-1, self.n_alphas, n_val), t.W)


def prediction_moments(pred: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mean(P_a)``, ``<Yv0, P_a>`` and ``||P_a||^2`` (each (n_alphas, n_voxels), float64) of validation
    predictions ``pred`` (n_voxels, n_alphas, n_val) float32 (overwritten) and centred validation responses ``W``
    (n_val, n_voxels).

    Examples
    --------
    >>> pred, W = torch.tensor([[[1.0, 3.0]]]), torch.tensor([[-1.0], [1.0]])
    >>> [m.tolist() for m in prediction_moments(pred, W)]
    [[[2.0]], [[2.0]], [[10.0]]]
    """
    n_voxels, n_alphas, n_val = pred.shape
    W = W.T.contiguous()
    out = torch.empty(3, n_alphas, n_voxels, dtype=torch.float64, device=pred.device)
    # float32 sums: torch's CPU reductions are pairwise (cascade), relative error ~1e-7 over 2,000 rows
    # (measured against float64), and three times faster than summing with dtype=float64
    for a in range(n_alphas):
        P = pred[:, a]
        out[0, a] = P.sum(1).div_(n_val)
        out[1, a] = (P * W).sum(1)
        out[2, a] = P.square_().sum(1)
    return out[0], out[1], out[2]
