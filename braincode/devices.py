"""The one device rule of braincode: ``"auto"`` means CUDA when a GPU is visible, else the CPU."""

from __future__ import annotations

import torch

from braincode.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` (or ``"cuda:1"``) into a :class:`torch.device`.

    Raises
    ------
    ConfigError
        For an unknown device name, or ``"cuda"`` on a machine without a usable GPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    braincode.errors.ConfigError: unknown device; ...
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError("unknown device", expected='"auto", "cpu" or "cuda" (or "cuda:<index>")', found=repr(device))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "CUDA was requested but is not available",
            expected="a CUDA build of torch and a visible GPU",
            found=f"torch {torch.__version__} without a usable GPU",
            fix='use device="cpu" or device="auto"',
        )
    return torch.device(device)
