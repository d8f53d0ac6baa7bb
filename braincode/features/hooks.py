"""Forward hooks as a context manager: capture the outputs of named modules during one forward pass."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def capture_outputs(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each module in ``modules`` while the block runs; the hooks are removed afterwards.

    A module returning a tuple contributes its first element. The returned dict is filled by the forward passes
    run inside the ``with`` block (the last pass wins); outputs are not detached, so gradients can flow
    through them.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> with capture_outputs({"fc": net[0]}) as out:
    ...     _ = net(torch.zeros(2, 3))
    >>> tuple(out["fc"].shape), len(net[0]._forward_hooks)
    ((2, 4), 0)
    """
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            captured[name] = output[0] if isinstance(output, (tuple, list)) else output

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
