"""braincode command line: validate, fit, run, report, demo, bank, caption, train-decoder and synthesize.

This module only builds the parser (each module of :mod:`braincode.commands` adds its own sub-command) and turns
errors of the :class:`braincode.errors.BraincodeError` family into one message and exit status 2. Library
warnings and dask's logs stay off unless ``--verbose``; ``--quiet`` also hides progress bars.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from braincode.errors import BraincodeError

#: Modules of :mod:`braincode.commands`, in the order their sub-commands are listed.
COMMANDS: tuple[str, ...] = (
    "validate", "fit", "run", "report", "demo", "caption", "train_decoder", "synthesize",
)
#: Loggers of libraries that talk too much at INFO/WARNING level; raised to ERROR unless ``--verbose``.
NOISY_LOGGERS = ("distributed", "dask", "transformers", "diffusers", "accelerate", "huggingface_hub", "timm",
                 "open_clip", "PIL", "matplotlib")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``braincode`` command.

    Examples
    --------
    >>> parser = build_parser()
    >>> parser.parse_args(["fit", "--data", "d", "--subject", "subj01", "--model", "m", "--out", "o"]).cv
    5
    """
    parser = argparse.ArgumentParser(prog="braincode", description=__doc__.splitlines()[0])
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    level.add_argument("--verbose", action="store_true", help="info messages, library warnings and dask's logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"braincode.commands.{name}").register(sub)
    return parser


def _configure_output(quiet: bool, verbose: bool) -> None:
    """Quiet by default: braincode's warnings and the commands' own lines; more with ``verbose``."""
    if quiet:
        os.environ["BRAINCODE_PROGRESS"] = "0"
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("braincode").setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # dask worker processes inherit it
    # read when dask.distributed is first imported, in the worker processes too: "critical", as a worker's heartbeat
    # that outlives the scheduler at shutdown logs an error with a traceback (a task's error reaches the client)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
    warnings.filterwarnings("ignore")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``braincode`` command; returns the exit status (2 for bad input)."""
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as escapes, not tracebacks
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    _configure_output(args.quiet, args.verbose)
    try:
        return args.func(args)
    except BraincodeError as exc:
        print(f"braincode {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
