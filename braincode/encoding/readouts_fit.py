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
from braincode.encoding.readouts import FactorizedReadout, ReadoutEnsemble, RoutingReadout
from braincode.errors import ConfigError, DataFormatError

#: Options only the routing readout takes.
ROUTING_OPTIONS = ("d_model", "n_heads", "d_ff")


def make_readout(
    kind: str,
    *,
    num_prefix_tokens: int,
    grid: tuple[int, int] | None = None,
    preset: str = "published",
    queries: str = "roi",
    runs: int = 1,
    random_state: int | None = 0,
    device: str = "auto",
    **options: Any,
) -> FactorizedReadout | RoutingReadout | ReadoutEnsemble:
    """The token readout that ``braincode fit --readout`` and the pipeline's ``encoding.readout`` name.

    Parameters
    ----------
    kind : {"factorized", "routing"}
    num_prefix_tokens, grid
        Of the extractor whose tokens the readout reads (``grid=None``: square).
    preset : {"published", "cpu"}
        Routing only (:data:`~braincode.encoding.readouts_routing.ROUTING_PRESETS`).
    queries : {"roi", "voxel"}
        Routing only: one query per ROI (as published) or per voxel.
    runs : int
        More than 1 averages that many runs (:class:`~braincode.encoding.readouts.ReadoutEnsemble`).
    **options
        Further constructor arguments (``max_epochs``, ``batch_size``, ``lr``; routing only: ``d_model``,
        ``n_heads``, ``d_ff``, an error with the factorized readout); ``None`` values are left at their defaults.

    Examples
    --------
    >>> type(make_readout("routing", num_prefix_tokens=1, preset="cpu", runs=2)).__name__
    'ReadoutEnsemble'
    >>> make_readout("factorized", num_prefix_tokens=1, max_epochs=3).max_epochs
    3
    """
    given = {k: v for k, v in options.items() if v is not None}
    common = {"num_prefix_tokens": num_prefix_tokens, "grid": grid, "random_state": random_state, "device": device}
    if kind == "factorized":
        routing_only = sorted(set(given) & set(ROUTING_OPTIONS))
        if routing_only:
            raise ConfigError("options of the routing readout given to the factorized one",
                              expected=f"none of {', '.join(ROUTING_OPTIONS)} with the factorized readout",
                              found=", ".join(routing_only), fix="drop them, or use the routing readout")
        readout = FactorizedReadout(**common, **given)
    elif kind == "routing":
        if queries not in ("roi", "voxel"):
            raise ConfigError("unknown readout queries", expected='"roi" or "voxel"', found=repr(queries))
        readout = RoutingReadout.from_preset(preset, queries=queries, **given, **common)
    else:
        raise ConfigError("unknown token readout", expected='"factorized" or "routing"', found=repr(kind))
    return ReadoutEnsemble(readout, n_runs=runs) if runs > 1 else readout


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
