"""Sub-commands of the ``braincode`` CLI, one module each with ``register(subparsers)``.

A command module imports only the standard library at its top, so that building the parser (``braincode
--help``) stays fast; the work's own imports happen inside the function that runs the command.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: The ``--device`` choices of every command (see :func:`braincode.devices.resolve_device`).
DEVICES = ("auto", "cpu", "cuda")
#: The default feature cache (``BRAINCODE_CACHE`` overrides it).
DEFAULT_CACHE = Path(os.environ.get("BRAINCODE_CACHE", Path.home() / ".cache" / "braincode" / "features"))


def add_device(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` to a command's parser."""
    parser.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when a GPU is visible")


def run_args(args: argparse.Namespace) -> dict[str, object]:
    """A command's arguments as they go into its output manifest (without the function that runs it)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}
