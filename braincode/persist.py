"""One save format for every braincode model: ``model.safetensors`` + ``config.json`` naming class and version.

A saveable class implements two methods:

- ``_get_state(self) -> tuple[dict, dict]``: a JSON-able config and a dict of named arrays/tensors;
- ``_from_state(cls, config, tensors, device)`` (classmethod): rebuild a fitted object from them.

:func:`save` writes the pair into a folder (each file atomically); :func:`load` reads any such folder back and
returns an object of the class the config names, on the device chosen by :func:`braincode.devices.resolve_device`.
The class is found by its dotted path (``module.qualname``), imported only when loading, so this bottom-layer
module depends on no layer above it.

Examples
--------
>>> import numpy as np, tempfile
>>> class Mean:
...     def __init__(self, mu=None): self.mu_ = mu
...     def _get_state(self): return {"note": "demo"}, {"mu": self.mu_}
...     @classmethod
...     def _from_state(cls, config, tensors, device): return cls(tensors["mu"].numpy())
>>> folder = save(Mean(np.arange(3.0, dtype=np.float32)), tempfile.mkdtemp(), class_path="builtins.object")
>>> read_config(folder)["class"]
'builtins.object'
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braincode.atomic import atomic_write
from braincode.devices import resolve_device
from braincode.errors import DataFormatError, MissingFileError

FORMAT = "braincode-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def save(obj: Any, folder: str | Path, *, class_path: str | None = None) -> Path:
    """Write ``obj`` (a class with ``_get_state``) into ``folder`` as ``config.json`` + ``model.safetensors``.

    Parameters
    ----------
    obj
        The fitted object; its ``_get_state()`` returns ``(config, tensors)``.
    folder
        Created if needed. Both files are written atomically.
    class_path
        Dotted path of the class that :func:`load` rebuilds (default: ``obj``'s own class).

    Returns
    -------
    Path
        ``folder``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    config, tensors = obj._get_state()
    state = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v.detach().cpu())
             .contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "class": class_path or _class_path(obj),
              "config": config}
    atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
    atomic_write(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(header, indent=2)))
    return folder


def read_config(folder: str | Path) -> dict:
    """The header of a saved model (``format``, ``format_version``, ``class``, ``config``), checked.

    Raises
    ------
    MissingFileError
        When ``config.json`` or ``model.safetensors`` is missing.
    DataFormatError
        When the config is not a braincode model or has a newer format version.
    """
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise MissingFileError("saved model is incomplete", path=folder / name,
                                   expected=f"{CONFIG_FILE} and {WEIGHTS_FILE} (written by braincode's save)",
                                   fix="save the model again")
    try:
        header = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError("saved model config is not JSON", path=folder / CONFIG_FILE,
                              expected="a JSON object", found=str(exc)) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataFormatError("not a braincode model", path=folder / CONFIG_FILE,
                              expected=f'"format": "{FORMAT}"', found=repr(header.get("format")
                                                                             if isinstance(header, dict) else header))
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise DataFormatError("saved model is newer than this braincode", path=folder / CONFIG_FILE,
                              expected=f"format_version <= {FORMAT_VERSION}", found=str(header["format_version"]),
                              fix="upgrade braincode")
    return header


def load(folder: str | Path, *, device: str = "auto") -> Any:
    """Load any model saved by :func:`save`: the config names its class.

    Parameters
    ----------
    folder
        A folder written by :func:`save` (e.g. a fit's ``encoder/``).
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``; numpy-based models ignore it.

    Examples
    --------
    >>> model = load("out/subj01/encoder")  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    header = read_config(folder)
    module_name, _, qualname = header["class"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError):
        raise DataFormatError("saved model names an unknown class", path=folder / CONFIG_FILE,
                              expected="a braincode model class", found=header["class"]) from None
    tensors = load_file(str(folder / WEIGHTS_FILE))
    return cls._from_state(header["config"], tensors, resolve_device(device))
