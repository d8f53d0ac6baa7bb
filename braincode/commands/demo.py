"""``braincode demo``: a synthetic subject end to end, scored against its known truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from braincode.commands import add_device


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``args.out``."""
    from braincode.pipeline.demo import run_demo

    run_demo(args.out, n_train=args.n_train, seed=args.seed, device=args.device)
    return 0


def register(subparsers) -> None:
    """Add ``demo`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("demo", help="synthetic data end to end: features, ridge, scores against the ground truth")
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--n-train", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    add_device(p)
    p.set_defaults(func=run)
