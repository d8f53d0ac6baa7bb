"""``braincode report RESULTS --out DIR``: the HTML report of a ``fit`` folder or a pipeline subject folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from braincode.commands import run_args


def run(args: argparse.Namespace) -> int:
    """Write ``args.out/report.html`` from what ``args.results`` holds (scores, maps, captions, images)."""
    from braincode.atomic import output_folder
    from braincode.report.subject import write_folder_report

    # any folder name, even one that is not UTF-8, gives a printable subject name
    subject = args.subject or os.fsencode(Path(args.results).resolve().name).decode("utf-8", "replace")
    with output_folder(args.out, command="braincode report", args=run_args(args)) as tmp:
        write_folder_report(args.results, tmp / "report.html", subject=subject)
    print(f"wrote {Path(args.out) / 'report.html'}")
    return 0


def register(subparsers) -> None:
    """Add ``report`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("report", help="write the HTML report of a fit or pipeline subject folder")
    p.add_argument("results", type=Path, help="output folder of `braincode fit`, or OUTPUT/subjNN of `run`")
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced as a whole)")
    p.add_argument("--subject", help="subject name shown in the report (default: the folder's name)")
    p.set_defaults(func=run)
