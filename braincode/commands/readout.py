"""The token readouts of ``braincode fit --readout factorized|routing``.

::

    braincode fit --data ROOT --subject subj01 --model open_clip:tiny-vit@random --layer blocks.2 \\
        --readout routing --out OUT [--queries roi|voxel|N] [--d-model 256] [--epochs 15]

Writes ``scores.csv``, ``summary.json`` and ``{lh,rh}_pred_test.npy`` as the ridge ``fit`` does, plus
``OUT/readout/`` (``weights.safetensors`` + ``config.json``) and, for routing, ``OUT/routing_maps.png``.
The ``r``/``r2`` columns are scored on the validation split held out for early stopping.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from braincode.data.core import Dataset
from braincode.data.rois import roi_groups
from braincode.encoding.metrics import pearson_r, r2_score
from braincode.encoding.readouts import FactorizedReadout, RoutingReadout
from braincode.errors import ConfigError
from braincode.pipeline.steps import FitResult

log = logging.getLogger(__name__)

def fit_readout(
    readout: FactorizedReadout | RoutingReadout,
    dataset: Dataset,
    tokens: dict[str, np.ndarray],
) -> FitResult:
    """Fit ``readout`` on the training split's tokens, score it on its validation rows, predict the test split.

    Parameters
    ----------
    readout : FactorizedReadout or RoutingReadout
        Unfitted; a routing readout with ``queries="roi"`` gets one query per ROI per hemisphere
        (:func:`~braincode.encoding.readouts.roi_groups` of the dataset's voxel table).
    dataset : Dataset
        With a ``"train"`` split holding responses and a ``"test"`` split.
    tokens : dict
        ``{"train": (n_train, T, D), "test": (n_test, T, D)}`` token maps of one layer.

    Returns
    -------
    FitResult
        The voxel table with ``r`` and ``r2`` on the validation rows, and the test predictions.

    Examples
    --------
    >>> result = fit_readout(RoutingReadout(d_model=64), ds, {"train": xt, "test": xs})  # doctest: +SKIP
    >>> write_fit_outputs(result, ds, Path("out"), {"readout": "routing"})  # doctest: +SKIP
    """
    Y = dataset["train"].responses.data
    groups = roi_groups(dataset.voxels) if isinstance(readout, RoutingReadout) and readout.queries == "roi" else None
    readout.fit(tokens["train"], Y, groups)
    val = readout.validation_index_
    pred_val = readout.predict(tokens["train"][val])
    scores = dataset.voxels.copy()
    scores["r"] = pearson_r(Y[val], pred_val)
    scores["r2"] = r2_score(Y[val], pred_val)
    return FitResult(scores=scores, test_predictions=readout.predict(tokens["test"]).astype(np.float32), model=readout)


def _queries(text: str) -> str | int:
    if text in ("roi", "voxel"):
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError("unknown --queries", expected='"roi", "voxel" or a positive number', found=repr(text))


def _build(args: argparse.Namespace, num_prefix_tokens: int) -> FactorizedReadout | RoutingReadout:
    common = {"num_prefix_tokens": num_prefix_tokens, "random_state": args.seed, "device": args.device,
              "max_epochs": args.epochs, "batch_size": args.batch_size}
    if args.lr is not None:
        common["lr"] = args.lr
    if args.readout == "factorized":
        return FactorizedReadout(**common)
    return RoutingReadout(queries=_queries(args.queries), d_model=args.d_model, n_heads=args.heads, d_ff=args.d_ff,
                          **common)


def fit_tokens(args: argparse.Namespace) -> int:
    """Run ``braincode fit`` with a token readout (``args.readout`` is ``factorized`` or ``routing``)."""
    from braincode.data import load_algonauts
    from braincode.encoding.routing_maps import routing_maps, save_overlays
    from braincode.features import FeatureStore, get_extractor
    from braincode.pipeline.steps import write_fit_outputs

    layers = args.layer or []
    if len(layers) != 1 or not layers[0].startswith("blocks."):
        raise ConfigError(f"--readout {args.readout} reads the tokens of one block", expected="one --layer blocks.N",
                          found=str(layers or "none"), fix="pass e.g. --layer blocks.6")
    start = time.perf_counter()
    ds = load_algonauts(args.data, args.subject)
    store = FeatureStore(args.cache)
    stimuli = {split: ds[split].stimuli for split in ("train", "test")}
    out = Path(args.out)
    extractor = get_extractor(args.model, layers=layers, device=args.device)
    tokens = {split: extractor.extract(s, store=store)[layers[0]] for split, s in stimuli.items()}
    readout = _build(args, extractor.num_prefix_tokens)
    result = fit_readout(readout, ds, tokens)
    readout.save(out / "readout")
    if isinstance(readout, RoutingReadout) and readout.queries != "voxel":
        maps = routing_maps(readout, tokens["test"][:8])
        face = [q for q in maps.labels if "FFA" in q or "faces" in q] or maps.labels[:4]
        save_overlays(maps, stimuli["test"], out / "routing_maps.png", queries=face[:4])
    info = {"model": args.model, "layers": layers, "readout": args.readout,
            "score_split": "validation (early stopping)", "seconds": round(time.perf_counter() - start, 1)}
    write_fit_outputs(result, ds, out, info)
    print(f"wrote {out}: scores.csv, summary.json, lh_pred_test.npy, rh_pred_test.npy, readout/")
    print(f"mean validation r over {len(result.scores)} vertices: {result.scores['r'].mean():.3f}")
    return 0
