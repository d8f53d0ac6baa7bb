"""The ``braincode`` command line: ``validate``, ``fit`` and ``demo``.

Errors of the :class:`braincode.errors.BraincodeError` family are printed as one message (no traceback) and the
command exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from braincode.errors import BraincodeError

log = logging.getLogger("braincode")

#: Modules of :mod:`braincode.commands` whose ``register(subparsers)`` adds further sub-commands.
COMMAND_MODULES: tuple[str, ...] = ("caption", "train_decoder", "synthesize")

DEFAULT_CACHE = Path(os.environ.get("BRAINCODE_CACHE", Path.home() / ".cache" / "braincode" / "features"))


def _cmd_validate(args: argparse.Namespace) -> int:
    from braincode.data import load_algonauts, validate_algonauts

    problems = validate_algonauts(args.data, args.subject)
    if problems:
        for problem in problems:
            print(f"braincode validate: error: {problem}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found in {args.data}", file=sys.stderr)
        return 2
    ds = load_algonauts(args.data, args.subject)
    train = ds["train"]
    hemis = ds.voxels["hemisphere"].value_counts().sort_index().to_dict()
    print(f"{args.data} {ds.subject}: OK")
    print(f"  train: {len(train.stimuli)} images, responses {train.responses.shape}")
    print(f"  test:  {len(ds['test'].stimuli)} images")
    print(f"  vertices per hemisphere: {hemis}")
    print(f"  ROI families: {', '.join(ds.roi_families) or 'none'}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    if args.readout != "ridge":
        from braincode.commands.readout import fit_tokens

        return fit_tokens(args)
    from braincode.data import load_algonauts
    from braincode.features import FeatureStore
    from braincode.features.design import FeatureSpec, extract_design
    from braincode.pipeline.steps import fit_and_score, write_fit_outputs

    start = time.perf_counter()
    ds = load_algonauts(args.data, args.subject)
    store = FeatureStore(args.cache)
    vision = FeatureSpec(args.model, tuple(args.layer or ["pooled"]), args.pool, args.grid)
    specs = [(vision, False)] + ([(FeatureSpec(args.text_model), True)] if args.text_features else [])
    stimuli = {split: ds[split].stimuli for split in ("train", "test")}
    parts = [extract_design(stimuli, spec, store=store, device=args.device, text=t) for spec, t in specs]
    designs = {split: np.concatenate([p[split] for p in parts], axis=1) for split in stimuli}
    result = fit_and_score(designs["train"], ds["train"].responses.data, designs["test"], ds.voxels, cv=args.cv,
                           n_permutations=args.permutations, device=args.device)
    info = {
        "model": args.model,
        "layers": list(vision.layers),
        "pool": vision.pool,
        "grid": vision.out_grid,
        "text_model": args.text_model if args.text_features else None,
        "n_features": int(designs["train"].shape[1]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    out = Path(args.out)
    write_fit_outputs(result, ds, out, info)
    written = "scores.csv, summary.json, {lh,rh}_pred_test.npy, {lh,rh}.r.gii"
    if not args.text_features:  # an image-only encoder is differentiable: keep it for `braincode synthesize`
        from braincode.encoding.torch_encoder import TorchEncoder

        TorchEncoder.from_estimator(vision, result.model, voxels=ds.voxels, device=args.device).save(out)
        written += ", the encoder (encoder.safetensors, encoder.json, voxels.csv)"
    print(f"wrote {out}: {written}")
    print(f"mean cross-validated r over {len(result.scores)} vertices: {result.scores['r'].mean():.3f}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from braincode.pipeline.demo import run_demo

    run_demo(Path(args.out), n_train=args.n_train, seed=args.seed, device=args.device)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from braincode.pipeline.config import load_config
    from braincode.pipeline.runner import run_pipeline

    config = load_config(args.config)
    results = run_pipeline(config, scheduler=args.scheduler, n_workers=args.workers)
    for subject, steps in results.items():
        done = ", ".join(f"{s}{'' if ran else ' (up to date)'}" for s, ran in steps.items())
        print(f"{subject}: {done}")
    print(f"outputs in {config.output}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from braincode.report.subject import write_folder_report

    out = write_folder_report(args.results, Path(args.out) / "report.html", subject=args.subject)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``braincode`` command."""
    from braincode.commands.readout import READOUTS
    from braincode.commands.readout import add_arguments as add_readout_arguments

    parser = argparse.ArgumentParser(prog="braincode", description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a dataset in the Algonauts 2023 layout")
    p.add_argument("data", type=Path, help="root folder holding subjNN/")
    p.add_argument("--subject", required=True, help="e.g. subj01")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("fit", help="extract features, fit a per-voxel ridge encoder, score and predict the test split")
    p.add_argument("--data", type=Path, required=True, help="root folder holding subjNN/ (Algonauts 2023 layout)")
    p.add_argument("--subject", required=True)
    p.add_argument("--model", required=True, help="model id, e.g. open_clip:ViT-B-32@openai")
    p.add_argument("--layer", action="append", help="layer name (repeatable); default: pooled")
    p.add_argument("--readout", choices=READOUTS, default="ridge",
                   help="ridge on pooled features, or a token readout (factorized, attention routing)")
    p.add_argument("--pool", default="grid", choices=["grid", "mean", "cls"], help="how token maps become vectors")
    p.add_argument("--grid", type=int, default=4, help="pooled patch-grid side for --pool grid")
    p.add_argument("--text-features", action="store_true", help="add text features of the captions")
    p.add_argument("--text-model", default="minilm", help="text model id for --text-features")
    p.add_argument("--cv", type=int, default=5, help="folds of the outer and inner cross-validation")
    p.add_argument("--permutations", type=int, default=0,
                   help="permutations for per-voxel p-values of r, FDR-corrected (0: none)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, required=True)
    add_readout_arguments(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("demo", help="synthetic data end to end: features, ridge, scores against the ground truth")
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--n-train", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("run", help="run a pipeline config (YAML) for every subject, resumably, on dask")
    p.add_argument("config", type=Path)
    p.add_argument("--scheduler", help="tcp://host:port of a running dask scheduler, or slurm (dask-jobqueue)")
    p.add_argument("--workers", type=int, default=2, help="workers of the local cluster, or SLURM jobs")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="write the HTML report of a fit or pipeline subject folder")
    p.add_argument("results", type=Path, help="output folder of `braincode fit`, or OUTPUT/subjNN of `run`")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--subject", help="subject name shown in the report (default: the folder's name)")
    p.set_defaults(func=_cmd_report)

    for name in COMMAND_MODULES:
        importlib.import_module(f"braincode.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``braincode`` command; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    if args.quiet:
        os.environ["BRAINCODE_PROGRESS"] = "0"
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except BraincodeError as exc:
        print(f"braincode {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
