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
(:mod:`braincode.encoding._partition`: 1.33 n^3 float64 flops per alpha for 5 folds, against 2.13 n^3), one alpha
at a time from the largest down; by default each voxel leaves once two alphas in a row scored clearly below its best
(:mod:`braincode.encoding._descend`). The factorisations run on the cores other processes leave idle, then the
voxel batches (memory: the kernel, one alpha's smoothers, one batch); the refit solves ``K + alpha I`` with one
float64 Cholesky factor per chosen alpha.

Where the parts live: :mod:`~braincode.encoding._design` (centred features, Grams and kernels, fold bases and
targets), :mod:`~braincode.encoding._search` (the grid, the choice of scorer, voxel batches),
:mod:`~braincode.encoding._descend` (dual K-fold, alpha by alpha), :mod:`~braincode.encoding._refit`,
:mod:`~braincode.encoding._smoother`, :mod:`~braincode.encoding._partition`,
:mod:`~braincode.encoding._scoring` (moments to scores) and :mod:`~braincode.encoding._loo` (``cv="loo"``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from braincode.devices import resolve_device
from braincode.encoding._design import Splits
from braincode.encoding._scoring import TIE_TOL, select_alphas
from braincode.encoding._search import BandedRidgeCVResult, search
from braincode.errors import ConfigError, DataFormatError

__all__ = ["SCORES", "TIE_TOL", "BandedRidgeCVResult", "RidgeCVResult", "Splits", "as_tensor", "banded_ridge_cv",
           "check_alphas", "ridge_cv", "select_alphas", "simplex_candidates"]

#: Scores that can select alphas.
SCORES = ("r2", "pearson")


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
    alphas_scored : Tensor of shape (n_voxels,), int64
        How many alphas were scored for each voxel (fewer than all only with ``alpha_search="descend"``).
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    best_alphas: torch.Tensor
    cv_scores: torch.Tensor
    cv_r: torch.Tensor
    cv_r2: torch.Tensor
    alphas_scored: torch.Tensor
    oof: torch.Tensor | None = None


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
    alpha_search: str = "descend",
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
    alpha_search : {"descend", "grid"}
        How the dual form with K-fold splits goes over ``alphas`` (elsewhere every alpha is scored for every
        voxel, whose cost hardly depends on their number). ``"descend"``: from the largest alpha down, a voxel
        leaving once two alphas in a row scored more than 1e-3 below its best, and alphas that no voxel still needs
        are skipped (:mod:`braincode.encoding._descend`); this picks the grid's alpha wherever a voxel's CV curve
        has a single peak over the grid, or dips less than that on the way (at the Algonauts size: the grid's
        alpha at every vertex, 5.7 of 10 alphas scored per vertex). ``"grid"``: every alpha for every voxel.

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
    res = search(
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
        alpha_search=alpha_search,
    )
    return RidgeCVResult(res.coef, res.intercept, res.best_alphas, res.cv_scores, res.cv_r, res.cv_r2,
                         res.alphas_scored, res.oof)


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
    return search(
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
