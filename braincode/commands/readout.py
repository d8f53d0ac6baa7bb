"""``braincode fit-readout``: fit a ridge, factorized or attention-routing readout and write the ``fit`` outputs.

::

    braincode fit-readout --data ROOT --subject subj01 --model open_clip:tiny-vit@random --layer blocks.2 \\
        --readout routing --out OUT [--queries roi|voxel|N] [--d-model 256] [--epochs 15]

Writes ``scores.csv``, ``summary.json`` and ``{lh,rh}_pred_test.npy`` as ``braincode fit`` does; the token readouts
also write ``OUT/readout/`` (``weights.safetensors`` + ``config.json``) and, for routing, ``OUT/routing_maps.png``.
For the token readouts the ``r``/``r2`` columns are scored on the validation split held out for early stopping.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from braincode.data.core import Dataset
from braincode.encoding.metrics import pearson_r, r2_score
from braincode.encoding.readouts import FactorizedReadout, RoutingReadout, roi_groups
from braincode.errors import ConfigError
from braincode.pipeline.steps import FitResult

log = logging.getLogger(__name__)

READOUTS = ("ridge", "factorized", "routing")


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
    return FitResult(scores=scores, test_predictions=readout.predict(tokens["test"]).astype(np.float32))


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


def _cmd_fit_readout(args: argparse.Namespace) -> int:
    from braincode.data import load_algonauts
    from braincode.encoding.routing_maps import routing_maps, save_overlays
    from braincode.features import FeatureStore, get_extractor
    from braincode.pipeline.steps import FeatureSpec, extract_design, fit_and_score, write_fit_outputs

    start = time.perf_counter()
    ds = load_algonauts(args.data, args.subject)
    store = FeatureStore(args.cache)
    stimuli = {split: ds[split].stimuli for split in ("train", "test")}
    out = Path(args.out)
    if args.readout == "ridge":
        spec = FeatureSpec(args.model, (args.layer,), "grid", args.grid)
        design = extract_design(stimuli, spec, store=store, device=args.device)
        result = fit_and_score(design["train"], ds["train"].responses.data, design["test"], ds.voxels,
                               random_state=args.seed, device=args.device)
    else:
        extractor = get_extractor(args.model, layers=[args.layer], device=args.device)
        tokens = {split: extractor.extract(s, store=store)[args.layer] for split, s in stimuli.items()}
        readout = _build(args, extractor.num_prefix_tokens)
        result = fit_readout(readout, ds, tokens)
        readout.save(out / "readout")
        if isinstance(readout, RoutingReadout) and readout.queries != "voxel":
            maps = routing_maps(readout, tokens["test"][:8])
            face = [q for q in maps.labels if "FFA" in q or "faces" in q] or maps.labels[:4]
            save_overlays(maps, stimuli["test"], out / "routing_maps.png", queries=face[:4])
    info = {"model": args.model, "layers": [args.layer], "readout": args.readout,
            "score_split": "cross-validated" if args.readout == "ridge" else "validation (early stopping)",
            "seconds": round(time.perf_counter() - start, 1)}
    write_fit_outputs(result, ds, out, info)
    print(f"wrote {out}: scores.csv, summary.json, lh_pred_test.npy, rh_pred_test.npy"
          + ("" if args.readout == "ridge" else ", readout/"))
    print(f"mean {info['score_split']} r over {len(result.scores)} vertices: {result.scores['r'].mean():.3f}")
    return 0


def register(subparsers) -> None:
    """Add ``fit-readout`` to the ``braincode`` CLI."""
    from braincode.cli import DEFAULT_CACHE

    p = subparsers.add_parser("fit-readout", help="fit a ridge, factorized or attention-routing readout on tokens")
    p.add_argument("--data", type=Path, required=True, help="root folder holding subjNN/ (Algonauts 2023 layout)")
    p.add_argument("--subject", required=True)
    p.add_argument("--model", required=True, help="vision model id, e.g. open_clip:ViT-B-32@openai")
    p.add_argument("--layer", required=True, help='token layer, e.g. "blocks.6"')
    p.add_argument("--readout", choices=READOUTS, default="routing")
    p.add_argument("--queries", default="roi", help='routing queries: "roi", "voxel" or a number')
    p.add_argument("--d-model", type=int, default=256, help="routing width (published: 768)")
    p.add_argument("--heads", type=int, default=8, help="routing heads (published: 16)")
    p.add_argument("--d-ff", type=int, default=512, help="routing feed-forward width (published: 1024)")
    p.add_argument("--epochs", type=int, default=15, help="maximum epochs (early stopping on validation r)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the readout's)")
    p.add_argument("--grid", type=int, default=4, help="pooled grid side for the ridge readout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_fit_readout)
