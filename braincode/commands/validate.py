"""``braincode validate DATA [--subject subj01]``: check a subject's folder and list every problem found."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from braincode.commands.fit import FORMATS


def run(args: argparse.Namespace) -> int:
    """Check ``args.subject`` in ``args.data`` (any layout); exit status 2 when it has problems."""
    from braincode.data import load_subject, validate_subject

    problems = validate_subject(args.data, args.subject, format=args.format, n_folds=args.cv)
    if problems:
        for problem in problems:
            print(f"braincode validate: error: {problem}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found in {args.data}", file=sys.stderr)
        return 2
    ds = load_subject(args.data, args.subject, format=args.format)
    hemis = ds.voxels["hemisphere"].value_counts().sort_index().to_dict()
    print(f"{args.data} {ds.subject} ({ds.meta.get('format', args.format)}, {ds.space}): OK")
    for name in ds.splits:
        responses = ds[name].responses
        print(f"  {name}: {len(ds[name].stimuli)} stimuli" + (f", responses {responses.shape}" if responses is not None else ""))
    print(f"  voxels per hemisphere: {hemis}")
    print(f"  ROI families: {', '.join(ds.roi_families) or 'none'}")
    return 0


def register(subparsers) -> None:
    """Add ``validate`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("validate", help="check a subject's data folder (any layout) and list every problem")
    p.add_argument("data", type=Path, help="data folder (Algonauts 2023, NSD root, NIfTI or surface folder)")
    p.add_argument("--subject", help="e.g. subj01 (optional when the folder holds one subject)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="data layout (auto: detected from the folder)")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds the fit will use")
    p.set_defaults(func=run)
