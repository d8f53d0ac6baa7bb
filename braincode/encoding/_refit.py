"""Refits on all samples at each voxel's chosen alpha (and feature-space weights), for
:func:`~braincode.encoding.solvers.ridge_cv` and :func:`~braincode.encoding.solvers.banded_ridge_cv`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from braincode.encoding._design import Design
from braincode.encoding._memory import voxel_batch_size
from braincode.encoding._smoother import shifted_factors
from braincode.progress import progress

if TYPE_CHECKING:
    from braincode.encoding._search import BandedRidgeCVResult


def refit_by_alpha(
    design: Design, Y: torch.Tensor, out: BandedRidgeCVResult, y_means: torch.Tensor, batch: int, bar: bool
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


def refit_batch(design, full_basis, winners, alphas, Yc, XtY) -> torch.Tensor:
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
