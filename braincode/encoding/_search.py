"""The grid search of :func:`~braincode.encoding.solvers.ridge_cv` and
:func:`~braincode.encoding.solvers.banded_ridge_cv`: every (feature-space weights, alpha) pair scored on every
fold by the cheaper scorer (eigen-basis, per-fold smoothers, or K-fold smoothers from one inverse per alpha,
:mod:`braincode.encoding._descend`), voxel batch by voxel batch, then the refit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from braincode.encoding._descend import PATIENCE, descend
from braincode.encoding._design import Basis, Design, Split, Splits, Targets, centred_batch
from braincode.encoding._memory import cpu_threads, voxel_batch_size
from braincode.encoding._partition import partition_is_cheaper
from braincode.encoding._refit import refit_batch, refit_by_alpha
from braincode.encoding._scoring import TIE_TOL, AlphaScores, OutOfFold, fold_score, select_alphas
from braincode.encoding._smoother import Smoother, smoother_is_cheaper
from braincode.errors import ConfigError
from braincode.progress import progress

logger = logging.getLogger(__name__)

#: Refit bases (one eigen-decomposition of all rows per feature-space weighting) kept across voxel batches.
FULL_BASIS_CACHE = 16
#: How :func:`search` goes over the alphas of dual K-fold ridge (:mod:`braincode.encoding._descend`).
ALPHA_SEARCHES = ("descend", "grid")


def _bytes_per_voxel(design: Design, n_alphas: int, rank: int, within: int, cached_splits: int) -> int:
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
    alphas_scored : Tensor of shape (n_voxels,), int64
        How many alphas were scored for each voxel (all of them but with ``alpha_search="descend"``).
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    best_alphas: torch.Tensor
    best_gammas: torch.Tensor
    cv_scores: torch.Tensor
    cv_r: torch.Tensor
    cv_r2: torch.Tensor
    alphas_scored: torch.Tensor
    oof: torch.Tensor | None = None


def _fold_bases(design: Design, gamma: torch.Tensor, alphas: torch.Tensor, bar: bool = False) -> list[Basis]:
    """The fold bases of one gamma, one after the other (each eigen-problem uses every thread; side by side they
    would fight over OpenMP's thread pool)."""
    splits = progress(design.splits, desc="ridge: fold decompositions", enabled=bar)
    return [design.fold_basis(s, gamma, alphas) for s in splits]


def _fold_scorer(design: Design, split: Split, gamma: torch.Tensor, alphas: torch.Tensor, n_voxels: int):
    """Dual form: the fold's :class:`~braincode.encoding._smoother.Smoother` where it is the cheaper (and its
    Cholesky factors exist), else its eigen-basis; both give the validation moments of every alpha."""
    if not design.primal and smoother_is_cheaper(len(split.train), len(split.val), len(alphas), n_voxels):
        with cpu_threads(design.threads, alphas.device):
            smoother = Smoother.build(*design.fold_kernels(split, gamma), alphas)
        if smoother is not None:
            return smoother
    return design.fold_basis(split, gamma, alphas)


def _partition_applies(design: Design, n_alphas: int, n_voxels: int) -> bool:
    """Whether every fold's smoothers come from one inverse per alpha (:mod:`braincode.encoding._descend`): the
    folds partition the samples, the smoothers are the cheaper scorers and one inverse costs less than a factor per
    fold."""
    sizes = [(len(s.train), len(s.val)) for s in design.splits]
    return (
        design.partition
        and not design.primal
        and partition_is_cheaper(sizes)
        and all(smoother_is_cheaper(t, v, n_alphas, n_voxels) for t, v in sizes)
    )


def search(
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
    alpha_search: str = "descend",
) -> BandedRidgeCVResult:
    """Grid over (gamma, alpha) for every voxel, then one refit per voxel with its best pair. ``alpha_search``
    (one of :data:`ALPHA_SEARCHES`) applies to dual ridge with K-fold splits (:mod:`braincode.encoding._descend`);
    every other search scores every alpha."""
    if alpha_search not in ALPHA_SEARCHES:
        raise ConfigError("unknown alpha search", expected=f"one of {ALPHA_SEARCHES}", found=repr(alpha_search))
    design = Design(Xs, splits, fit_intercept, device, copy=copy_X)
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
        alphas_scored=torch.full((v,), len(alphas), dtype=torch.long),
        oof=torch.empty(n, v, dtype=torch.float32) if keep_oof else None,
    )
    y_means = torch.empty(v, dtype=torch.float64)

    def batch_size(bases: list[Basis] | list[Smoother] | int) -> int:
        """Voxels per batch for these fold scorers (or this many bytes of work per voxel)."""
        if isinstance(bases, int):
            rank, per_voxel = n, bases
        elif isinstance(bases[0], Smoother):  # responses and fold targets, the predictions, the score sums
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
                                    fit_intercept=fit_intercept, bar=show_progress, out=out, y_means=y_means,
                                    alpha_search=alpha_search)
        refit_by_alpha(design, Y, out, y_means, batch, show_progress)
        return out
    full_basis = lru_cache(maxsize=FULL_BASIS_CACHE)(
        lambda g: design.full_basis(torch.tensor(g, dtype=torch.float64, device=device))
    )
    _search_by_batch(design, Y, alphas_dev, gammas_dev, batch_size, score=score, fit_intercept=fit_intercept,
                     bar=show_progress, out=out, y_means=y_means, refit=full_basis)
    return out


def _search_by_batch(design, Y, alphas, gammas, batch_size, *, score, fit_intercept, bar, out, y_means, refit):
    """Every fold's basis of the first gamma in memory; per voxel batch, all folds and gammas, then the refit
    from ``refit`` (a cached full-data basis per gamma; None: left to the caller). Returns the batch size."""
    v, device = Y.shape[1], alphas.device
    first = _fold_bases(design, gammas[0], alphas, bar=bar)
    batch = batch_size(first)
    starts = range(0, v, batch)
    for start in progress(starts, desc="ridge: voxel batches", total=len(starts), enabled=bar):
        cols = slice(start, min(start + batch, v))
        Yc, y_mean = centred_batch(Y, cols, fit_intercept, device)
        targets, XtY = design.targets(Yc)
        top, top_gamma, top_alpha, sums = _best_per_voxel(
            design, first, gammas, alphas, targets, score, bar and len(gammas) > 1
        )
        winners = gammas[top_gamma]  # (vb, n_spaces)
        y_means[cols] = y_mean.cpu()
        if refit is not None:
            W = refit_batch(design, refit, winners, alphas[top_alpha], Yc, XtY)
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


def _search_by_fold(
    design, Y, alphas, gamma, batch_size, *, score, fit_intercept, bar, out, y_means, alpha_search
) -> int:
    """Dual ridge with one feature space: the alphas scored from one inverse per alpha where the folds partition the
    samples (:func:`~braincode.encoding._descend.descend`), else (and for alphas whose inverse fails) fold by fold;
    then each voxel's alpha among those scored. Returns the voxel batch size."""
    v, n_folds = Y.shape[1], len(design.splits)
    scores = AlphaScores.empty(len(alphas), v, alphas.device)
    left, batch = len(alphas), 0
    if _partition_applies(design, len(alphas), v):
        left, batch = descend(design, Y, alphas, gamma, scores, batch_size, score=score, fit_intercept=fit_intercept,
                              patience=PATIENCE if alpha_search == "descend" else None, bar=bar, y_means=y_means)
    if left:
        batch = _score_fold_by_fold(design, Y, alphas[:left], gamma, batch_size, scores, score=score,
                                    fit_intercept=fit_intercept, bar=bar, y_means=y_means,
                                    responses=left == len(alphas))
    scores.sums.count = sum(len(split.val) for split in design.splits)
    idx, chosen, picked = scores.select(n_folds)
    out.best_alphas[:] = alphas[idx].cpu()
    out.best_gammas[:] = gamma[:, None].cpu()
    out.cv_scores[:] = chosen.cpu()
    out.alphas_scored[:] = scores.scored.sum(0).cpu()
    cv_r, cv_r2 = picked.scores()
    out.cv_r[:], out.cv_r2[:] = cv_r.cpu(), cv_r2.cpu()
    return batch


def _score_fold_by_fold(design, Y, alphas, gamma, batch_size, scores, *, score, fit_intercept, bar, y_means,
                        responses) -> int:
    """Every alpha of ``alphas`` (the smallest ones of ``scores``) for every voxel, one fold's scorer
    (:func:`_fold_scorer`) in memory at a time; with ``responses`` the voxels' own sums and means are taken too.
    Returns the voxel batch size."""
    v, device = Y.shape[1], alphas.device
    m = len(alphas)
    batch = 0
    splits = progress(design.splits, desc="ridge: folds (decomposition, voxel batches)", enabled=bar)
    for k, split in enumerate(splits):
        basis = _fold_scorer(design, split, gamma, alphas, v)
        batch = batch or batch_size([basis])
        for start in range(0, v, batch):
            cols = slice(start, min(start + batch, v))
            Yc, y_mean = centred_batch(Y, cols, fit_intercept, device)
            if responses and k == 0:
                y_means[cols] = y_mean.cpu()
            (t,), _ = design.targets(Yc, fold=k)
            moments = basis.moments(t)
            scores.total[:m, cols] += fold_score(*moments, t, score)
            scores.sums.columns(cols, slice(0, m)).add(*moments, t, responses=responses)
        del basis  # freed before the next fold's scorer is built
    scores.scored[:m] = True
    return batch


def _best_per_voxel(
    design: Design,
    first: list[Basis],
    gammas: torch.Tensor,
    alphas: torch.Tensor,
    targets: list[Targets],
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
