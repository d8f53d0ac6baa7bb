"""``braincode fit``: extract features, cross-validate a voxel-wise encoder, predict the test split.

::

    braincode fit --data ROOT --subject subj01 --model open_clip:ViT-B-32@openai --layer blocks.6 --layer pooled \\
        [--text-features] [--banded] [--format auto|algonauts|nsd] --out OUT

Each ``--layer`` (and ``--text-features``) is a named feature space; ridge uses them side by side, ``--banded``
gives each its own regularisation and writes each space's unique and shared R^2 per voxel to ``scores.csv``.
``--readout factorized|routing`` fits a token readout on one block's tokens instead. The output folder appears
as one unit (see :func:`braincode.atomic.output_folder`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from braincode.commands import DEFAULT_CACHE, add_device, run_args
from braincode.errors import ConfigError

READOUTS = ("ridge", "factorized", "routing")
#: ``--format`` values (:data:`braincode.data.layouts.FORMATS` and ``auto``).
FORMATS = ("auto", "algonauts", "nsd", "volume", "surface")
#: Names of :data:`braincode.encoding.readouts.ROUTING_PRESETS` (named here so that ``--help`` needs no torch).
PRESETS = ("cpu", "published")


def feature_spaces(args: argparse.Namespace, stimuli: dict) -> tuple[dict[str, dict], dict]:
    """Named feature spaces ``{split: {name: X}}`` (one per ``--layer``, plus ``text`` for ``--text-features``)
    and the description of how they were made (for ``summary.json``)."""
    from braincode.features import FeatureStore
    from braincode.features.design import FeatureSpec, extract_spaces

    store = FeatureStore(args.cache)
    vision = FeatureSpec(args.model, tuple(dict.fromkeys(args.layer or ["pooled"])), args.pool, args.grid)
    spaces = extract_spaces(stimuli, vision, store=store, device=args.device)
    if args.text_features:
        text = extract_spaces(stimuli, FeatureSpec(args.text_model), store=store, device=args.device, text=True)
        for split in spaces:
            spaces[split]["text"] = text[split]["pooled"]
    info = {"model": args.model, "layers": list(vision.layers), "pool": vision.pool, "grid": vision.out_grid,
            "text_model": args.text_model if args.text_features else None}
    return spaces, info


def _fit_ridge(args: argparse.Namespace, ds, out: Path) -> str:
    """Fit ridge (or banded ridge) on the named feature spaces into ``out``; returns the summary line."""
    from braincode.encoding.analysis import cross_validate_voxels, make_encoder
    from braincode.encoding.analysis_outputs import write_result
    from braincode.features.design import FeatureSpec, stack_spaces

    splits = [split for split in ("train", "test") if split in ds.splits]
    spaces, info = feature_spaces(args, {split: ds[split].stimuli for split in splits})
    X = {split: stack_spaces(spaces.pop(split)) for split in splits}  # the per-space copies go
    columns = X["train"][1]
    widths = [c.stop - c.start for c in columns.values()]
    estimator = make_encoder(cv=args.cv, device=args.device, spaces=widths if args.banded else None,
                             alpha_search=args.alpha_search)
    # the stacked features are this command's own copy: standardised and centred in place
    estimator.set_params(standardscaler__copy=False, **({} if args.banded else {"ridgeencoder__copy_X": False}))
    test = ds.splits.get("test")
    result = cross_validate_voxels(
        estimator, X["train"][0], ds["train"].responses.data, ds.voxels, cv=args.cv,
        X_test=X["test"][0] if "test" in X else None,
        Y_test=None if test is None or test.responses is None else test.responses.data,
        spaces=columns if args.banded else None, n_permutations=args.permutations,
    )
    info = {**info, "spaces": list(columns), "readout": "banded ridge" if args.banded else "ridge",
            "n_features": int(X["train"][0].shape[1])}
    write_result(result, ds, out, info)
    if not args.text_features:  # an image-only encoder is differentiable: keep it for `braincode synthesize`
        from braincode.encoding.torch_encoder import TorchEncoder

        spec = FeatureSpec(args.model, tuple(info["layers"]), args.pool, args.grid)
        TorchEncoder.from_estimator(spec, result.model, voxels=ds.voxels, device=args.device).save(out)
    r = result.scores["r"]
    line = f"{ds.subject}: mean cross-validated r {r.mean():.3f} over {r.notna().sum()} of {len(r)} voxels"
    edge = result.diagnostics.get("alpha_at_upper_edge", 0)
    return line + (f" ({edge:.0%} at the top of the alpha grid)" if edge > 0.1 else "")


def run(args: argparse.Namespace) -> int:
    """Run ``braincode fit``; returns the exit status."""
    from braincode.atomic import output_folder
    from braincode.data import check_fittable, load_subject, require_captions
    from braincode.data.checks import min_samples

    min_samples(args.cv)  # refuses fewer than 2 folds before any data is read
    n_spaces = len(dict.fromkeys(args.layer or ["pooled"])) + args.text_features
    if args.banded and n_spaces < 2:
        raise ConfigError("--banded needs at least two feature spaces", expected="two --layer, or --text-features",
                          found=f"{n_spaces} feature space", fix="add a --layer or --text-features")
    if args.permutations < 0:
        raise ConfigError("--permutations must be 0 or more", found=str(args.permutations))
    start = time.perf_counter()
    with output_folder(args.out, command="braincode fit", args=run_args(args)) as tmp:
        if args.readout != "ridge":
            from braincode.commands.readout import fit_tokens

            fit_tokens(argparse.Namespace(**{**vars(args), "out": tmp}))
            line = f"{args.subject}: {args.readout} readout"
        else:
            ds = load_subject(args.data, args.subject, format=args.format)
            check_fittable(ds, n_folds=args.cv)
            if args.text_features:
                require_captions(ds)
            line = _fit_ridge(args, ds, tmp)
    print(f"fit {line}; wrote {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


def register(subparsers) -> None:
    """Add ``fit`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("fit", help="extract features, fit a voxel-wise encoder, score it, predict the test split",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True,
                   help="data folder: Algonauts 2023, NSD root, NIfTI folder (betas + mask) or surface folder (GIFTI)")
    p.add_argument("--subject", help="e.g. subj01 (optional when the folder holds one subject)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="data layout (auto: detected from the folder)")
    p.add_argument("--model", required=True, help="model id, e.g. open_clip:ViT-B-32@openai")
    p.add_argument("--layer", action="append", help="layer name, one feature space each (repeatable); default: pooled")
    p.add_argument("--pool", default="grid", choices=["grid", "mean", "cls"], help="how token maps become vectors")
    p.add_argument("--grid", type=int, default=4, help="pooled patch-grid side for --pool grid")
    p.add_argument("--text-features", action="store_true", help="add a feature space of the captions' text features")
    p.add_argument("--text-model", default="minilm", help="text model id for --text-features")
    p.add_argument("--readout", choices=READOUTS, default="ridge",
                   help="ridge on pooled features, or a token readout (factorized, attention routing)")
    p.add_argument("--banded", action="store_true",
                   help="banded ridge: one regularisation per feature space, with per-space unique R^2 in scores.csv")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    p.add_argument("--alpha-search", choices=["descend", "grid"], default="descend",
                   help="ridge with more features than images: go down the alphas from the largest, each voxel "
                        "stopping after two alphas in a row clearly below its best (the grid's choice wherever its "
                        "CV curve has one peak), or score every alpha for every voxel (grid)")
    p.add_argument("--permutations", type=int, default=0,
                   help="permutations for per-voxel p-values of r, FDR-corrected (0: none)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    add_device(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced as a whole)")
    g = p.add_argument_group("token readouts (--readout factorized|routing)")
    g.add_argument("--preset", default="published", choices=PRESETS,
                   help="routing sizes: published 768/16/1024 (d_model/heads/d_ff), or cpu 256/8/512 (smaller, "
                        "not the paper's)")
    g.add_argument("--queries", default="roi", help='routing queries: "roi" (one per ROI, published) or "voxel"')
    g.add_argument("--d-model", type=int, default=None, help="routing width (default: the preset's)")
    g.add_argument("--heads", type=int, default=None, help="routing heads (default: the preset's)")
    g.add_argument("--d-ff", type=int, default=None, help="routing feed-forward width (default: the preset's)")
    g.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs (default: the readout's; early stopping on validation r)")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: the readout's)")
    g.add_argument("--runs", type=int, default=None, help="average this many seeded runs (an ensemble, as the paper)")
    g.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
