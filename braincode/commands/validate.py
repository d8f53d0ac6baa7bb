"""``braincode validate DATA --subject subj01``: check a subject's folder and list every problem found."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """Check the Algonauts 2023 folder of ``args.subject`` in ``args.data``; exit status 2 when it has problems."""
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
    if len(train.stimuli) < 10:
        print(f"  warning: {len(train.stimuli)} training image(s): `braincode fit` needs at least two per "
              "cross-validation fold (10 for the default 5 folds)")
    return 0


def register(subparsers) -> None:
    """Add ``validate`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("validate", help="check a dataset in the Algonauts 2023 layout")
    p.add_argument("data", type=Path, help="root folder holding subjNN/")
    p.add_argument("--subject", required=True, help="e.g. subj01")
    p.set_defaults(func=run)
