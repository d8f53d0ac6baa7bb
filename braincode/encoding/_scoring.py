"""Scoring for the ridge solvers: validation scores and out-of-fold sums of every alpha without the predictions.

See :mod:`braincode.encoding.solvers` for the derivation: per fold, the moments of the validation predictions
``P_a = A diag(d_a) E`` are linear in ``d_a`` after partial fractions, so all alphas cost one ``r x r`` product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from braincode.encoding._design import Targets

#: Mean CV scores within this of the best count as ties; ties go to the larger alpha.
TIE_TOL = 1e-10
#: Relative eigenvalue gap (to lam_max + alpha_max) below which two directions are summed directly instead of by
#: partial fractions; this bounds the float64 cancellation of the partial fractions by 1 / CLUSTER_TOL.
CLUSTER_TOL = 1e-8


@dataclass
class Quadratic:
    """Per-fold scoring matrices: ``||A diag(d_a) E||^2`` split into diagonal, cross-group and within-group parts.

    ``D[a, j] = 1 / (lam_j + alpha_a)``; the small ``(n_alphas, r)`` factors are precomputed so that each voxel
    batch costs one float64 ``r x r`` product and a few ``(n_alphas, r) @ (r, n_voxels)`` products.
    """

    D: torch.Tensor  # (n_alphas, r)
    D_sq_hdiag: torch.Tensor  # (n_alphas, r) D^2 * H_jj
    D_abar: torch.Tensor  # (n_alphas, r) D * mean row of A
    cross: torch.Tensor  # (r, r) 2 H_jk / (lam_k - lam_j) across groups, 0 inside
    pair_j: torch.Tensor  # (n_pairs,) pairs j < k in the same group, when there are few of them ...
    pair_k: torch.Tensor
    pair_coef: torch.Tensor  # (n_alphas, n_pairs) 2 H_jk d_j d_k
    within_idx: torch.Tensor  # (m,) ... otherwise the directions that share a group with another one
    within: torch.Tensor  # (m, m) H restricted to pairs in the same group, zero diagonal

    @classmethod
    def build(
        cls, lam: torch.Tensor, H: torch.Tensor, A_mean: torch.Tensor, alphas: torch.Tensor
    ) -> Quadratic:
        """Group close eigenvalues (``lam`` ascending) and precompute the partial-fraction matrix.

        ``H = A^T A`` and ``A_mean`` (the mean row of ``A``) describe the validation rows in the basis.
        """
        gap_tol = CLUSTER_TOL * (float(lam[-1]) + float(alphas[-1]))
        group = torch.cat([lam.new_zeros(1, dtype=torch.long), torch.cumsum(torch.diff(lam) > gap_tol, 0)])
        same = group[:, None] == group[None, :]
        gaps = lam[None, :] - lam[:, None]
        cross = torch.where(same, 0.0, 2.0 * H / torch.where(same, 1.0, gaps))
        D = 1.0 / (lam[None, :] + alphas[:, None])
        pair_j, pair_k = torch.nonzero(torch.triu(same, diagonal=1), as_tuple=True)
        none = pair_j[:0]
        if len(pair_j) <= len(lam):  # few close pairs (the usual case): sum them one by one
            pair_coef = 2.0 * H[pair_j, pair_k] * D[:, pair_j] * D[:, pair_k]
            idx, within = none, H.new_zeros(0, 0)
        else:  # large groups (e.g. whitened features): one product per alpha
            idx = torch.nonzero(torch.bincount(group)[group] > 1).flatten()
            within = (H * same)[idx][:, idx]
            within.fill_diagonal_(0.0)
            pair_j, pair_k, pair_coef = none, none, D[:, :0]
        return cls(D, D * D * torch.diagonal(H), D * A_mean, cross, pair_j, pair_k, pair_coef, idx, within)

    @property
    def within_rows(self) -> int:
        """Rows of per-voxel float64 work that the within-group terms need."""
        return max(len(self.pair_j), 2 * len(self.within_idx))

    def moments(self, E: torch.Tensor, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mean(P_a)``, ``<Yv0, P_a>`` and ``||P_a||^2`` (each (n_alphas, n_voxels), float64) of the validation
        predictions ``P_a = A diag(d_a) E``, from ``E`` and ``F = A^T Yv0`` (float32, r x n_voxels)."""
        E64 = E.double()
        pbar = self.D_abar @ E64
        sq = self.D_sq_hdiag @ (E64 * E64)  # diagonal and within-group terms of ||P_a||^2
        if len(self.pair_j):
            sq += self.pair_coef @ (E64[self.pair_j] * E64[self.pair_k])
        if len(self.within_idx):
            Ew = E64[self.within_idx]
            for a in range(self.D.shape[0]):
                scaled = self.D[a, self.within_idx, None] * Ew
                sq[a] += (scaled * (self.within @ scaled)).sum(0)
        sq += self.D @ (self.cross @ E64).mul_(E64)  # sum_j d_j E_j (M E)_j: the one r x r product
        cov = self.D @ (F.double() * E64)
        return pbar, cov, sq


def fold_score(pbar: torch.Tensor, cov: torch.Tensor, sq: torch.Tensor, t: Targets, score: str) -> torch.Tensor:
    """Validation R^2 or Pearson r (n_alphas, n_voxels) of one fold from the moments of its predictions."""
    n_val, delta, sst = t.n_val, t.delta, t.sst
    if score == "r2":  # ||Yv0 - P + delta||^2 with delta = validation mean - fold intercept
        sse = (sq - 2.0 * cov).add_(sst + n_val * delta * delta).sub_((2.0 * n_val) * delta * pbar)
        return torch.where(sst > 0, 1.0 - sse / torch.where(sst > 0, sst, 1.0), 0.0)
    var = (sq - n_val * pbar * pbar).clamp_min_(0.0)  # ||P_a - mean||^2
    denom = torch.sqrt(sst * var)
    return torch.where(denom > 0, cov / torch.where(denom > 0, denom, 1.0), 0.0)


@dataclass
class OutOfFold:
    """Sums over every validation row of every fold (float64, centred units): per alpha and voxel those of the
    predictions, per voxel those of the responses; all that the Pearson r and R^2 of the out-of-fold predictions
    (fold intercepts included) need, without the predictions."""

    sp: torch.Tensor  # (n_alphas, vb) sum of predictions
    spp: torch.Tensor  # sum of squared predictions
    syp: torch.Tensor  # sum of response x prediction
    sy: torch.Tensor  # (vb,) sum of responses
    syy: torch.Tensor  # sum of squared responses
    count: int = 0  # validation rows

    @classmethod
    def zeros(cls, n_alphas: int, n_voxels: int, device: torch.device) -> OutOfFold:
        z = [torch.zeros(shape, dtype=torch.float64, device=device) for shape in [(n_alphas, n_voxels)] * 3]
        return cls(*z, torch.zeros(n_voxels, dtype=torch.float64, device=device), torch.zeros_like(z[0][0]))

    def columns(self, cols: slice, alphas: slice = slice(None)) -> OutOfFold:
        """A view of some voxels and alphas (adding to it adds to these sums); its ``count`` is not shared."""
        sp, spp, syp = (x[alphas, cols] for x in (self.sp, self.spp, self.syp))
        return OutOfFold(sp, spp, syp, self.sy[cols], self.syy[cols])

    def add(
        self, pbar: torch.Tensor, cov: torch.Tensor, sq: torch.Tensor, t: Targets, responses: bool = True
    ) -> None:
        """Add one fold: its predictions are ``P_a + c`` and its responses ``Yv0 + m`` (``c = m - delta``). Without
        ``responses`` only the predictions' sums (a fold's other alphas, whose responses are already in)."""
        n, m = t.n_val, t.y_mean
        c = m - t.delta
        self.sp += n * (pbar + c)
        self.spp += sq + (2.0 * n) * c * pbar + n * c * c
        self.syp += cov + n * m * (pbar + c)
        if responses:
            self.sy += n * m
            self.syy += t.sst + n * m * m
            self.count += n

    def pick(self, idx: torch.Tensor) -> OutOfFold:
        """The sums at one alpha per voxel (``idx`` of shape (n_voxels,)): shapes (1, n_voxels)."""
        picked = (x.gather(0, idx[None]) for x in (self.sp, self.spp, self.syp))
        return OutOfFold(*picked, self.sy, self.syy, self.count)

    def where(self, mask: torch.Tensor, other: OutOfFold) -> OutOfFold:
        mine, theirs = (self.sp, self.spp, self.syp), (other.sp, other.spp, other.syp)
        return OutOfFold(*(torch.where(mask, a, b) for a, b in zip(mine, theirs)), self.sy, self.syy, self.count)

    def scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pearson r and R^2 (picked sums) of the out-of-fold predictions over all validation rows (NaN for
        constant voxels)."""
        n, sy, syy = self.count, self.sy, self.syy
        sp, spp, syp = self.sp[0], self.spp[0], self.syp[0]
        sst = (syy - sy * sy / n).clamp_min_(0.0)
        var_p = (spp - sp * sp / n).clamp_min_(0.0)
        constant = sst <= 1e-12 * syy.clamp_min(torch.finfo(torch.float64).tiny)
        denom = torch.sqrt(sst * var_p)
        r = torch.where(denom > 0, (syp - sy * sp / n) / torch.where(denom > 0, denom, 1.0), 0.0)
        r2 = 1.0 - (syy - 2.0 * syp + spp) / torch.where(constant, 1.0, sst)
        nan = torch.full_like(r, torch.nan)
        return torch.where(constant, nan, r), torch.where(constant, nan, r2)


def select_alphas(mean_scores: torch.Tensor, tol: float = TIE_TOL) -> torch.Tensor:
    """Index of the best row per column; among rows within ``tol`` of the best, the last (largest alpha).

    Examples
    --------
    >>> select_alphas(torch.tensor([[0.1, 0.5], [0.3, 0.5]], dtype=torch.float64)).tolist()
    [1, 1]
    """
    ok = mean_scores >= mean_scores.max(0).values - tol
    return mean_scores.shape[0] - 1 - ok.flip(0).to(torch.int8).argmax(0)


@dataclass
class AlphaScores:
    """A search's scores per (alpha, voxel): the fold scores summed, the out-of-fold sums, and which pairs were
    scored (a search that skips some, :func:`~braincode.encoding._descend.descend`, never picks them)."""

    total: torch.Tensor  # (n_alphas, n_voxels) float64
    scored: torch.Tensor  # (n_alphas, n_voxels) bool
    sums: OutOfFold

    @classmethod
    def empty(cls, n_alphas: int, n_voxels: int, device: torch.device) -> AlphaScores:
        total = torch.zeros(n_alphas, n_voxels, dtype=torch.float64, device=device)
        return cls(total, torch.zeros_like(total, dtype=torch.bool), OutOfFold.zeros(n_alphas, n_voxels, device))

    def record(self, a: int, cols: torch.Tensor, total: torch.Tensor, sums: OutOfFold, responses: bool) -> None:
        """Alpha ``a``'s summed fold scores (1, len(cols)) and sums of voxels ``cols``; with ``responses`` also the
        voxels' own sums."""
        cols = cols.to(self.total.device)
        self.total[a, cols] = total[0]
        self.scored[a, cols] = True
        for mine, theirs in zip((self.sums.sp, self.sums.spp, self.sums.syp), (sums.sp, sums.spp, sums.syp)):
            mine[a, cols] = theirs[0]
        if responses:
            self.sums.sy[cols], self.sums.syy[cols] = sums.sy, sums.syy

    def select(self, n_folds: int) -> tuple[torch.Tensor, torch.Tensor, OutOfFold]:
        """Each voxel's alpha index among the scored ones (:func:`select_alphas`), its mean score, and the sums
        there."""
        mean = torch.where(self.scored, self.total / n_folds, -torch.inf)
        idx = select_alphas(mean)
        return idx, mean.gather(0, idx[None])[0], self.sums.pick(idx)
