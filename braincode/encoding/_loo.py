"""Efficient leave-one-out ridge: one eigen-decomposition of all samples gives every sample's held-out prediction.

For ridge with an unpenalised intercept, the hat matrix at alpha is ``H_a = 11^T / n + Q diag(lam / (lam + a)) Q^T``
with ``Q`` (n x r) orthonormal: the eigenvectors of the centred kernel (dual form) or ``Xc V lam^-1/2`` (primal).
The leave-one-out residual of sample ``i`` is exactly ``(y_i - yhat_i) / (1 - H_ii)`` (the identity behind
scikit-learn's ``RidgeCV`` GCV mode), so each alpha costs one ``Q (s_a * Q^T Y)`` product per voxel batch and no
refit per sample.
"""

from __future__ import annotations

import torch

from braincode.encoding._memory import voxel_batch_size
from braincode.encoding._scoring import TIE_TOL, select_alphas
from braincode.progress import progress


def loo_ridge(
    X: torch.Tensor,
    Y: torch.Tensor,
    alphas: torch.Tensor,
    *,
    score: str,
    fit_intercept: bool,
    device: torch.device,
    voxel_batch: int | None,
    show_progress: bool,
    keep_oof: bool,
) -> dict[str, torch.Tensor | None]:
    """Per voxel: the alpha with the best leave-one-out score (ties: the larger), the refit and the LOO scores.

    Returns a dict with the fields of :class:`~braincode.encoding.solvers.RidgeCVResult` (``cv_scores`` is the
    selecting score of the LOO predictions, ``cv_r``/``cv_r2`` their Pearson r and R^2).
    """
    n, p = X.shape
    Xc = X.to(device, torch.float64)
    mean = Xc.mean(0) if fit_intercept else torch.zeros(p, dtype=torch.float64, device=device)
    Xc -= mean
    primal = n >= p
    lam, vecs = torch.linalg.eigh(Xc.T @ Xc if primal else Xc @ Xc.T)
    keep = lam > max(float(lam[-1]), 0.0) * max(n, p) * torch.finfo(torch.float64).eps
    lam, vecs = lam[keep], vecs[:, keep]
    Q = Xc @ (vecs / torch.sqrt(lam)) if primal else vecs  # (n, r), orthonormal columns
    shrink = lam[None, :] / (lam[None, :] + alphas.to(device)[:, None])  # (n_alphas, r)
    lev = (Q * Q) @ shrink.T + (1.0 / n if fit_intercept else 0.0)  # (n, n_alphas): H_ii per alpha
    v = Y.shape[1]
    batch = voxel_batch_size(v, 8 * (4 * n + 4 * len(alphas)), 0, device, voxel_batch)
    out: dict[str, torch.Tensor | None] = {
        "coef": torch.empty(v, p, dtype=torch.float32).T, "intercept": torch.empty(v, dtype=torch.float32),
        "best_alphas": torch.empty(v, dtype=torch.float64), "cv_scores": torch.empty(v, dtype=torch.float64),
        "cv_r": torch.empty(v, dtype=torch.float64), "cv_r2": torch.empty(v, dtype=torch.float64),
        "oof": torch.empty(n, v, dtype=torch.float32) if keep_oof else None,
        "alphas_scored": torch.full((v,), len(alphas), dtype=torch.long),
    }
    for start in progress(range(0, v, batch), desc="ridge: leave-one-out batches", enabled=show_progress):
        cols = slice(start, min(start + batch, v))
        Yb = Y[:, cols].to(device, torch.float64)
        y_mean = Yb.mean(0) if fit_intercept else torch.zeros(Yb.shape[1], dtype=torch.float64, device=device)
        Yc = Yb - y_mean
        QtY = Q.T @ Yc
        sst = ((Yb - Yb.mean(0)) ** 2).sum(0)  # R^2 is about the mean, with or without an intercept
        r_all, r2_all, preds = [], [], []
        for a in range(len(alphas)):
            fitted = Q @ (shrink[a, :, None] * QtY)
            pred = Yc - (Yc - fitted) / (1.0 - lev[:, a : a + 1])  # centred LOO predictions
            r_all.append(_pearson(Yc, pred))
            r2_all.append(torch.where(sst > 0, 1.0 - ((Yc - pred) ** 2).sum(0) / torch.where(sst > 0, sst, 1.0),
                                      torch.nan))
            if keep_oof:
                preds.append(pred.float())
        r, r2 = torch.stack(r_all), torch.stack(r2_all)
        select = (r2 if score == "r2" else r).nan_to_num(-torch.inf)
        idx = select_alphas(select, TIE_TOL)
        pick = idx[None]
        out["best_alphas"][cols] = alphas[idx.cpu()]
        out["cv_scores"][cols] = select.gather(0, pick)[0].cpu()
        out["cv_r"][cols], out["cv_r2"][cols] = r.gather(0, pick)[0].cpu(), r2.gather(0, pick)[0].cpu()
        d = 1.0 / (lam[:, None] + alphas.to(device)[idx][None, :])
        if primal:
            W = vecs @ (d * (vecs.T @ (Xc.T @ Yc)))
        else:
            W = Xc.T @ (vecs @ (d * (vecs.T @ Yc)))
        out["coef"][:, cols] = W.float().cpu()
        out["intercept"][cols] = (y_mean - mean @ W).float().cpu()
        if keep_oof:
            chosen = torch.stack(preds).gather(0, idx[None, None, :].expand(1, n, -1))[0]
            out["oof"][:, cols] = (chosen + y_mean.float()).cpu()
    return out


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a0, b0 = a - a.mean(0), b - b.mean(0)
    denom = torch.sqrt((a0 * a0).sum(0) * (b0 * b0).sum(0))
    return torch.where(denom > 0, (a0 * b0).sum(0) / torch.where(denom > 0, denom, 1.0), torch.nan)
