"""The one family of errors that braincode raises for bad input.

Every message names the file (when there is one), what was expected, what was found, and how to fix it.
The CLI prints the message without a traceback and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class BraincodeError(Exception):
    """Base class of every error braincode raises on purpose.

    Parameters
    ----------
    what : str
        One sentence saying what is wrong.
    path : str or Path, optional
        The file or folder concerned.
    expected, found : str, optional
        What was expected and what was found instead.
    fix : str, optional
        How to fix it.
    """

    def __init__(
        self,
        what: str,
        *,
        path: str | Path | None = None,
        expected: str | None = None,
        found: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.expected, self.found, self.fix = expected, found, fix
        parts = [what if path is None else f"{path}: {what}"]
        if expected is not None:
            parts.append(f"expected {expected}")
        if found is not None:
            parts.append(f"found {found}")
        if fix is not None:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(parts))


class DataFormatError(BraincodeError):
    """A data file or folder does not have the layout, shape, dtype or values braincode expects."""


class MissingFileError(BraincodeError, FileNotFoundError):
    """A file that the layout requires is absent."""


class ModelError(BraincodeError):
    """A model id cannot be resolved, or its weights are not available offline."""


class ConfigError(BraincodeError, ValueError):
    """A parameter or configuration value is invalid."""


class OutputBusyError(BraincodeError):
    """Another command is writing the same output folder."""


class NotFittedError(BraincodeError):
    """An estimator or readout was used before ``fit``."""
