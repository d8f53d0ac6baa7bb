"""Dual K-fold ridge scored from the largest alpha down, each alpha's smoothers of every fold from one inverse of
``K + alpha I`` (:mod:`braincode.encoding._partition`), for :func:`~braincode.encoding.solvers.ridge_cv`.

At the Algonauts size most of a fit is the validation predictions: ``2 n_train n_val`` float32 flops per voxel,
fold and alpha. With ``patience`` (``alpha_search="descend"``) a voxel leaves the search once ``patience`` alphas
in a row scored more than :data:`MARGIN` below its best (:func:`leave_after`), and an alpha that no voxel still
needs is not inverted at all. Where a voxel's mean CV score has a single peak over the grid (it rises from the
largest alpha to its best one and falls after it), or dips by less than the margin on the way, this picks the
alpha of the exhaustive grid search; ``patience=None`` (``alpha_search="grid"``) scores every alpha for every
voxel.

The voxel batches hold their rows in fold order (:class:`~braincode.encoding._partition.FoldOrder`): each fold's
validation rows are one block of the batch and its training rows the two blocks around it, so the predictions of
every fold come from views of one copy of the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from itertools import pairwise

import torch

from braincode.encoding._design import Design, centred_batch
from braincode.encoding._memory import cpu_threads
from braincode.encoding._partition import FoldOrder, FoldSmoothers, partition_smoothers
from braincode.encoding._scoring import TIE_TOL, AlphaScores, OutOfFold, fold_score
from braincode.encoding._smoother import prediction_moments
from braincode.progress import progress

#: ``alpha_search="descend"``: a voxel leaves the search after this many alphas in a row that score more than
#: :data:`MARGIN` below its best ...
PATIENCE = 2
#: ... (a shallower dip is not a fall: at the Algonauts size a weak voxel's CV R^2 went 0.00633, 0.00598, 0.00632
#: from the largest alpha down, then up to 0.00701)
MARGIN = 1e-3


def leave_after(
    mean: torch.Tensor, best: torch.Tensor, misses: torch.Tensor, patience: int, margin: float = MARGIN
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Some voxels' best score and misses in a row after one more alpha's mean scores, and which of them leave the
    search (``patience`` alphas in a row more than ``margin`` below their best).

    Examples
    --------
    >>> best, misses = torch.tensor([-float("inf")], dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    >>> curve = [0.00633, 0.00598, 0.00632, 0.00701, -0.02627, -0.17728]  # largest alpha first
    >>> leaves = []
    >>> for s in curve:
    ...     best, misses, leave = leave_after(torch.tensor([s], dtype=torch.float64), best, misses, 2)
    ...     leaves.append(bool(leave))
    >>> leaves, float(best)
    ([False, False, False, False, False, True], 0.00701)
    """
    fell = mean < best - margin
    misses = torch.where(fell, misses + 1, 0)
    return torch.where(mean > best + TIE_TOL, mean, best), misses, misses >= patience


def score_batch(
    design: Design, smoothers: FoldSmoothers, Yp: torch.Tensor, score: str, responses: bool
) -> tuple[torch.Tensor, OutOfFold]:
    """One alpha's fold scores summed over the folds (1, vb) and out-of-fold sums of a batch in fold order."""
    bounds = smoothers.order.bounds
    total = torch.zeros(1, Yp.shape[1], dtype=torch.float64, device=Yp.device)
    sums = OutOfFold.zeros(1, Yp.shape[1], Yp.device)
    for k, (lo, hi) in enumerate(pairwise(bounds)):
        t = design.complement_targets(Yp[lo:hi], len(Yp) - (hi - lo))
        pred = smoothers.predictions(Yp, k, t.y_mean - t.delta)  # delta = validation mean - fold intercept
        moments = prediction_moments(pred[:, None], t.W)
        total += fold_score(*moments, t, score)
        sums.add(*moments, t, responses=responses)
    return total, sums


def descend(
    design: Design,
    Y: torch.Tensor,
    alphas: torch.Tensor,
    gamma: torch.Tensor,
    scores: AlphaScores,
    batch_size: Callable[[int], int],
    *,
    score: str,
    fit_intercept: bool,
    patience: int | None,
    bar: bool,
    y_means: torch.Tensor,
) -> tuple[int, int]:
    """Score ``alphas`` (ascending) from the largest down into ``scores`` (and each voxel's mean into ``y_means``).

    ``batch_size(bytes_per_voxel)`` sizes the voxel batches. Returns how many of the smallest alphas are left
    unscored because a factor of ``K + alpha I`` failed (they need the fold-by-fold scorers; 0 when every alpha
    was scored or no voxel still needed it), and the voxel batch size.
    """
    n_folds, v, device = len(design.splits), Y.shape[1], alphas.device
    order = FoldOrder.of([s.val for s in design.splits])
    active = torch.ones(v, dtype=torch.bool)
    best = torch.full((v,), -torch.inf, dtype=torch.float64)
    misses = torch.zeros(v, dtype=torch.long)
    n_val = max(b - a for a, b in pairwise(order.bounds))
    # per voxel: its rows gathered and centred, one fold's centred validation rows, predictions and products
    batch = batch_size(8 * design.n + 12 * n_val + 256)
    steps = progress(range(len(alphas) - 1, -1, -1), desc="ridge: alphas (inverse, voxel batches)", enabled=bar)
    kernel, rows = design.weighted_kernel(gamma), order.perm.cpu()
    with closing(partition_smoothers(kernel, order, alphas.flip(0).tolist(), design.center)) as per_alpha:
        for a in steps:
            idx = torch.nonzero(active).flatten()
            if len(idx) == 0:
                return 0, batch
            with cpu_threads(design.threads, device):
                smoothers = next(per_alpha)
            if smoothers is None:
                return a + 1, batch
            first = a == len(alphas) - 1
            starts = range(0, len(idx), batch)
            for start in progress(starts, desc="ridge: voxel batches", enabled=bar and len(starts) > 1):
                cols = idx[start : start + batch]
                Yp, y_mean = centred_batch(Y, cols, fit_intercept, device, rows=rows)
                if first:
                    y_means[cols] = y_mean.cpu()
                scores.record(a, cols, *score_batch(design, smoothers, Yp, score, first), responses=first)
                del Yp
            del smoothers
            if patience is not None:
                mean = scores.total[a, idx.to(scores.total.device)].cpu() / n_folds
                best[idx], misses[idx], leave = leave_after(mean, best[idx], misses[idx], patience)
                active[idx] = ~leave
    return 0, batch
