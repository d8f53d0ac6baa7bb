"""Fit a token readout on a dataset's training split and score it, every r labelled with how it was obtained.

:func:`fit_readout` is what ``braincode fit --readout routing|factorized`` and the pipeline call: it trains the
readout on the training split's tokens (early stopping on a held-out validation part of it), reports the
*validation* r per voxel of the kept epoch, and the *test* r when the test split has responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from braincode.data.core import Dataset
from braincode.encoding.metrics import pearson_r, r2_score
from braincode.errors import DataFormatError


@dataclass
class ReadoutFit:
    """Outcome of :func:`fit_readout`.

    Attributes
    ----------
    scores : DataFrame
        The voxel table plus ``r`` and ``r2`` on the validation rows (``info["r"]`` says so), and ``r_test`` when
        the test split has responses.
    test_predictions : ndarray of shape (n_test, n_voxels)
        float32 predictions for the test split.
    model : estimator
        The fitted readout.
    info : dict
        How each score was obtained (``"r"``, ``"r_test"``) and the training run (``fit_info_``: epochs, best
        epoch, ``stopped_improving``).
    """

    scores: pd.DataFrame
    test_predictions: np.ndarray
    model: Any
    info: dict = field(default_factory=dict)


def fit_readout(readout: Any, dataset: Dataset, tokens: dict[str, np.ndarray]) -> ReadoutFit:
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
    ReadoutFit

    Examples
    --------
    >>> from braincode.data.synthetic import make_synthetic  # doctest: +SKIP
    >>> fit = fit_readout(RoutingReadout.from_preset("cpu"), ds, {"train": xt, "test": xs})  # doctest: +SKIP
    >>> fit.info["r"], fit.info["stopped_improving"]  # doctest: +SKIP
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
    scores = dataset.voxels.copy()
    scores["r"] = readout.validation_r_
    scores["r2"] = r2_score(Y[val], pred_val)
    fit_info = readout.fit_info_
    info = {"r": fit_info.pop("score"), **fit_info}
    test_predictions = readout.predict(tokens["test"]).astype(np.float32)
    test = dataset["test"]
    if test.responses is not None:
        scores["r_test"] = pearson_r(test.responses.data, test_predictions)
        info["r_test"] = "test split (never seen in training or early stopping)"
    return ReadoutFit(scores=scores, test_predictions=test_predictions, model=readout, info=info)
