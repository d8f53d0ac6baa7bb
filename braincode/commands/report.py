"""``braincode report RESULTS --out DIR``: the HTML report of a ``fit`` folder or a pipeline subject folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from braincode.commands import run_args


def run(args: argparse.Namespace) -> int:
    """Write ``args.out/report.html`` from the scores in ``args.results``."""
    from braincode.atomic import output_folder
    from braincode.errors import MissingFileError
    from braincode.report.subject import write_subject_report

    results = Path(args.results)
    scores = [p for name in ("evaluate/scores.csv", "scores.csv") if (p := results / name).is_file()]
    if not scores:
        raise MissingFileError("no scores found", path=results, expected="scores.csv or evaluate/scores.csv",
                               found=", ".join(sorted(p.name for p in results.glob("*"))) or "an empty folder",
                               fix="pass the output folder of `braincode fit` or a subject folder of `braincode run`")
    subject = args.subject or os.fsencode(results.resolve().name).decode("utf-8", "replace")  # any folder name
    with output_folder(args.out, command="braincode report", args=run_args(args)) as tmp:
        write_subject_report(scores[0], tmp / "report.html", subject=subject, title=f"braincode report: {subject}")
    print(f"wrote {Path(args.out) / 'report.html'}")
    return 0


def register(subparsers) -> None:
    """Add ``report`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("report", help="write the HTML report of a fit or pipeline subject folder")
    p.add_argument("results", type=Path, help="output folder of `braincode fit`, or OUTPUT/subjNN of `run`")
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced as a whole)")
    p.add_argument("--subject", help="subject name shown in the report (default: the folder's name)")
    p.set_defaults(func=run)
