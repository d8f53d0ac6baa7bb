"""The steps of one subject's analysis, as plain functions: extract -> design -> fit and score -> write.

Each step takes and returns plain objects (arrays, data frames, dataclasses); the CLI and the batch pipeline chain
them. Nothing here reaches into another stage's internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from braincode.atomic import atomic_write
from braincode.data.core import Dataset
from braincode.data.predictions import write_algonauts_predictions
from braincode.data.rois import roi_families, roi_table
from braincode.encoding.estimators import RidgeEncoder
from braincode.encoding.metrics import algonauts_score, pearson_r
from braincode.encoding.stats import roi_bootstrap_ci, score_table
from braincode.encoding.torch_encoder import TorchEncoder
from braincode.features import FeatureStore
from braincode.features.design import FeatureSpec, extract_design
from braincode.io import write_map


@dataclass
class FitResult:
    """Outcome of :func:`fit_and_score`.

    Attributes
    ----------
    scores : DataFrame
        The voxel table plus ``r`` and ``r2`` (cross-validated on the training split) and ``alpha``.
    test_predictions : ndarray of shape (n_test, n_voxels)
        Predictions of the model refit on all training data, float32.
    model : estimator
        The fitted model that made them: a ``StandardScaler`` -> :class:`RidgeEncoder` pipeline, or a token readout.
    """

    scores: pd.DataFrame
    test_predictions: np.ndarray
    model: BaseEstimator


def make_encoder(alphas: Sequence[float] | None = None, cv: int = 5, device: str = "auto") -> Pipeline:
    """The default encoder: feature standardisation followed by a per-voxel-alpha :class:`RidgeEncoder`."""
    kwargs = {"cv": cv, "device": device}
    if alphas is not None:
        kwargs["alphas"] = np.asarray(alphas, dtype=float)
    return make_pipeline(StandardScaler(), RidgeEncoder(**kwargs))


def fit_image_encoder(
    spec: FeatureSpec,
    dataset: Dataset,
    *,
    store: FeatureStore | None = None,
    alphas: Sequence[float] | None = None,
    cv: int = 5,
    device: str = "auto",
) -> TorchEncoder:
    """Fit :func:`make_encoder` on ``spec``'s features of the training split, as a differentiable
    :class:`~braincode.encoding.torch_encoder.TorchEncoder` (images -> voxels) for BrainDiVE."""
    train = dataset["train"]
    design = extract_design({"train": train.stimuli}, spec, store=store, device=device)["train"]
    model = make_encoder(alphas, cv, device).fit(design, train.responses.data)
    return TorchEncoder.from_estimator(spec, model, voxels=dataset.voxels, device=device)


def fit_and_score(
    X_train: np.ndarray,
    Y_train: np.ndarray,
    X_test: np.ndarray,
    voxels: pd.DataFrame,
    *,
    Y_test: np.ndarray | None = None,
    alphas: Sequence[float] | None = None,
    cv: int = 5,
    n_permutations: int = 0,
    random_state: int = 0,
    device: str = "auto",
) -> FitResult:
    """Cross-validated per-voxel scores on the training split, then a refit that predicts the test split.

    The outer ``cv``-fold split (shuffled with ``random_state``) gives held-out predictions for every training
    stimulus; inside each fold the :class:`RidgeEncoder` picks each voxel's alpha by its own inner CV, so the
    reported scores never see the data that chose the alphas. The scores are those of
    :func:`braincode.encoding.stats.score_table`: ``r`` and ``r2``; with ``n_permutations`` a permutation
    p-value and its FDR q-value per voxel; when the voxel table has a ``noise_ceiling`` column, the Algonauts
    noise-normalised score; when the test split's responses ``Y_test`` are given (NSD's shared images), the
    test-split correlation ``test_r``.
    """
    outer = KFold(n_splits=cv, shuffle=True, random_state=random_state)
    held_out = cross_val_predict(make_encoder(alphas, cv, device), X_train, Y_train, cv=outer)
    model = make_encoder(alphas, cv, device).fit(X_train, Y_train)
    nc = voxels["noise_ceiling"].to_numpy() if "noise_ceiling" in voxels else None
    table = score_table(Y_train, held_out, noise_ceiling=nc, n_permutations=n_permutations,
                        random_state=random_state)
    scores = pd.concat([voxels.drop(columns=["noise_ceiling"], errors="ignore").reset_index(drop=True), table],
                       axis=1)
    scores["alpha"] = model[-1].best_alphas_
    predictions = model.predict(X_test).astype(np.float32)
    if Y_test is not None:
        scores["test_r"] = pearson_r(Y_test, predictions)
    return FitResult(scores=scores, test_predictions=predictions, model=model)


#: Columns that :func:`fit_and_score` and later steps add to the voxel table.
SCORE_COLUMNS = (
    "r", "r2", "alpha", "pvalue", "qvalue", "significant", "normalized_score", "test_r", "r_truth", "r_test",
    "ceiling",
)


def summarize(scores: pd.DataFrame, column: str = "r") -> dict[str, dict[str, float]]:
    """Mean of ``column`` per ROI, nested as ``{family: {roi: mean}}`` with ``{"all": {"all": mean}}``."""
    out: dict[str, dict[str, float]] = {}
    for row in roi_table(scores, [column]).itertuples(index=False):
        out.setdefault(row.family, {})[str(row.roi)] = float(getattr(row, column))
    return out


def fit_summary(scores: pd.DataFrame, *, random_state: int = 0) -> dict:
    """What ``summary.json`` holds beside the run's description: mean r per ROI with bootstrap 95% CIs, the
    number of FDR-significant voxels and the Algonauts score, when the scores carry what they need."""
    families = roi_families(scores)
    out: dict = {"mean_r": summarize(scores)}
    if families:
        ci = roi_bootstrap_ci(scores["r"].to_numpy(), scores, families, random_state=random_state)
        out["r_ci95"] = ci.to_dict(orient="records")
    if "significant" in scores:
        out["significant_voxels"] = int(scores["significant"].astype(bool).sum())
    if "noise_ceiling" in scores:
        out["algonauts_score"] = algonauts_score(scores["r"].to_numpy(), scores["noise_ceiling"].to_numpy())
    return out


def write_fit_outputs(result: FitResult, dataset: Dataset, out: Path, info: dict) -> None:
    """Write a fit's files into ``out``.

    ``scores.csv`` (one row per voxel), ``summary.json``, the cross-validated r as a map in the data's own
    space (``{lh,rh}.r.gii`` on surfaces, ``r.nii.gz`` for volumes), and the test-split predictions: in the
    Algonauts submission format ``{lh,rh}_pred_test.npy`` for hemisphere data, else ``pred_test.npy``.
    """
    out.mkdir(parents=True, exist_ok=True)
    if set(result.scores["hemisphere"]) <= {"lh", "rh"}:
        write_algonauts_predictions(out, result.test_predictions, result.scores)
        write_map(result.scores["r"].to_numpy(), dataset, out / "{hemi}.r.gii")
    else:
        atomic_write(out / "pred_test.npy", lambda p: np.save(p, result.test_predictions))
        write_map(result.scores["r"].to_numpy(), dataset, out / "r.nii.gz")
    atomic_write(out / "scores.csv", lambda p: result.scores.to_csv(p, index=False))
    summary = {"subject": dataset.subject, "space": dataset.space, **info, **fit_summary(result.scores)}
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
