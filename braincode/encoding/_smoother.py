"""Dual ridge validation predictions by direct products, for :func:`~braincode.encoding.solvers.ridge_cv`.

For one training fold with centred kernels ``K_tt`` (train x train) and ``K_vt`` (validation x train), the
validation predictions at ``alpha`` are ``S_alpha Z``, with the fold's *smoother* ``S_alpha = K_vt (K_tt + alpha
I)^-1`` and the centred training responses ``Z``. One float64 Cholesky factor per alpha gives ``S_alpha``
(``n_train^3 / 3 + 2 n_train^2 n_val`` flops); a voxel batch then costs one float32 product
``[S_1; ...; S_m] Z`` for all ``m`` alphas, whose rows are the validation predictions themselves. The scores need
no partial fractions and no eigen-decomposition: the float32 product is as accurate as any prediction
(``S_alpha`` is bounded whatever the conditioning of ``K_tt``, which only the float64 solves see).

The eigen-basis path (:class:`~braincode.encoding.solvers._Basis`) costs one ``n_train`` eigen-decomposition
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

if TYPE_CHECKING:
    from braincode.encoding.solvers import _Targets

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


def shifted_factors(
    kernel: torch.Tensor, alphas: Sequence[float], check_errors: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``torch.linalg.cholesky_ex(kernel + alpha I)`` for each alpha in turn, ``kernel + alpha I`` formed in place of
    ``kernel`` (no second n x n matrix; the diagonal is restored when the iteration ends or stops). The generator
    keeps no reference to a factor, so a caller that drops each one holds one factor at a time.

    Examples
    --------
    >>> K = torch.eye(2, dtype=torch.float64)
    >>> [float(f[0, 0]) ** 2 for f, _ in shifted_factors(K, [1.0, 3.0])], K.diagonal().tolist()
    ([2.0000000000000004, 4.0], [1.0, 1.0])
    """
    diagonal = kernel.diagonal().clone()
    try:
        for alpha in alphas:
            kernel.diagonal().copy_(diagonal).add_(alpha)
            yield torch.linalg.cholesky_ex(kernel, check_errors=check_errors)
    finally:
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
        for i, (factor, info) in enumerate(shifted_factors(k_train, alphas.tolist())):
            if int(info) != 0:
                return None
            # S = K_vt (K_tt + a I)^-1, i.e. S^T = (K_tt + a I)^-1 K_tv
            stacked[i * n_val : (i + 1) * n_val] = torch.cholesky_solve(k_val.T, factor).T
        return cls(stacked, len(alphas))

    def bytes_per_voxel(self) -> int:
        """Working memory of one more voxel in a batch: its predictions for every alpha, one alpha's products."""
        n_val = self.stacked.shape[0] // self.n_alphas
        return 4 * self.stacked.shape[0] + 8 * n_val

    def moments(self, t: _Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mean(P_a)``, ``<Yv0, P_a>`` and ``||P_a||^2`` (each (n_alphas, n_voxels), float64) of the validation
        predictions ``P_a`` in centred units, as :meth:`~braincode.encoding._scoring.Quadratic.moments` gives
        them."""
        pred = (self.stacked @ t.Z).view(self.n_alphas, -1, t.Z.shape[1])
        f64 = torch.float64
        out = torch.empty(3, self.n_alphas, t.Z.shape[1], dtype=f64, device=t.Z.device)
        for a, P in enumerate(pred):  # float32 products, float64 sums (no float64 copy of the predictions)
            out[0, a] = P.sum(0, dtype=f64).div_(P.shape[0])
            out[1, a] = (P * t.W).sum(0, dtype=f64)
            out[2, a] = P.square_().sum(0, dtype=f64)
        return out[0], out[1], out[2]
