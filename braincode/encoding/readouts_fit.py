"""Fit a token readout on a dataset's training split and score it, every r labelled with how it was obtained.

:func:`fit_readout` is what ``braincode fit --readout routing|factorized`` and the pipeline call: it trains the
readout on the training split's tokens (early stopping on a held-out validation part of it), reports the
*validation* r per voxel of the kept epoch, and the *test* r when the test split has responses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from braincode.data.core import Dataset
from braincode.encoding.analysis import VoxelCVResult
from braincode.encoding.metrics import normalized_score, pearson_r, r2_score
from braincode.errors import DataFormatError


def fit_readout(readout: Any, dataset: Dataset, tokens: dict[str, np.ndarray]) -> VoxelCVResult:
    """Fit ``readout`` on the training split's tokens; validation r per voxel, test predictions (and test r).

    Parameters
    ----------
    readout : RoutingReadout, FactorizedReadout or ReadoutEnsemble
        Unfitted. It receives the dataset's voxel table (ROI queries of ``RoutingReadout(queries="roi")``).
    dataset : Dataset
        With a ``"train"`` split holding responses and a ``"test"`` split.
    tokens : dict
        ``{"train": (n_train, T, D), "test": (n_test, T, D)}`` token maps of one layer (memory maps are fine).

    Returns
    -------
    VoxelCVResult
        ``scores``: the voxel table plus ``r`` and ``r2`` on the validation rows, ``test_r`` when the test split
        has responses and ``normalized_score`` when the table has a noise ceiling; ``diagnostics``: the run
        (``epochs_run``, ``best_epoch``, ``stopped_improving``, ...).

    Examples
    --------
    >>> res = fit_readout(RoutingReadout.from_preset("cpu"), ds, {"train": xt, "test": xs})  # doctest: +SKIP
    >>> res.methods["r"], res.diagnostics["stopped_improving"]  # doctest: +SKIP
    ('validation (early-stopping split of the training data)', False)
    """
    train = dataset["train"]
    if train.responses is None:
        raise DataFormatError("the training split has no responses", expected="responses for 'train'",
                              fix="load a dataset whose training split holds fMRI responses")
    Y = train.responses.data
    readout.fit(tokens["train"], Y, dataset.voxels)
    val = readout.validation_index_
    pred_val = readout.predict(tokens["train"][val])
    scores = dataset.voxels.copy().reset_index(drop=True)
    scores["r"] = readout.validation_r_
    scores["r2"] = r2_score(Y[val], pred_val)
    diagnostics = readout.fit_info_
    how = diagnostics.pop("score")
    methods = {"r": how, "r2": how}
    test_predictions = readout.predict(tokens["test"]).astype(np.float32)
    test = dataset["test"]
    if test.responses is not None:
        scores["test_r"] = pearson_r(test.responses.data, test_predictions)
        methods["test_r"] = "test split: Pearson r of the readout (never seen in training or early stopping)"
    if "noise_ceiling" in scores:
        scores["normalized_score"] = normalized_score(scores["r"].to_numpy(), scores["noise_ceiling"].to_numpy())
        methods["normalized_score"] = "100 r^2 / noise ceiling, clipped to [0, 100] (Algonauts), from r"
    return VoxelCVResult(scores, methods, test_predictions, readout, diagnostics=diagnostics)
