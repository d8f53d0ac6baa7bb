"""Attention maps of ViT backbones: capture per-layer probabilities, attention rollout and attention flow.

Capture works for open_clip vision towers (``nn.MultiheadAttention`` blocks, which open_clip calls with
``need_weights=False``: a forward pre-hook asks for per-head weights instead) and timm ViTs (the fused kernel is
switched off while recording and the probabilities are read at ``attn_drop``). Rollout and flow follow Abnar &
Zuidema (2020): each layer's head-averaged attention A becomes ``(1 - residual) A + residual I``, row-normalised;
rollout is the product over layers, flow the maximum flow through the layer graph with those capacities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from torch import nn

from braincode.errors import ConfigError
from braincode.progress import progress

_FLOW_UNITS = 2**24  # scipy's max-flow needs integer capacities: probabilities in units of 2^-24


def _tower(model: nn.Module) -> nn.Module:
    return getattr(model, "visual", model)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block of an open_clip vision tower / CLIP model or a timm ViT."""
    tower = _tower(model)
    blocks = getattr(getattr(tower, "transformer", None), "resblocks", None) or getattr(tower, "blocks", None)
    modules = [getattr(block, "attn", None) for block in blocks or []]
    if not modules or not all(isinstance(m, nn.MultiheadAttention) or hasattr(m, "attn_drop") for m in modules):
        raise ConfigError(
            "cannot find the attention layers of this model",
            expected="an open_clip CLIP / VisionTransformer (transformer.resblocks[i].attn = nn.MultiheadAttention) "
            "or a timm VisionTransformer (blocks[i].attn with attn_drop)",
            found=type(tower).__name__, fix="pass the vision tower of a supported ViT",
        )
    return modules


def _ask_for_weights(module, args, kwargs):
    return args, {**kwargs, "need_weights": True, "average_attn_weights": False}


@contextmanager
def record_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Context manager collecting each block's attention probabilities, (B, H, T, T) per layer, in layer order.

    Examples
    --------
    >>> import timm
    >>> vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32).eval()
    >>> with record_attention(vit) as maps, torch.no_grad():
    ...     _ = vit(torch.zeros(1, 3, 32, 32))
    >>> len(maps), tuple(maps[0].shape)
    (12, (1, 3, 5, 5))
    """
    maps: list[torch.Tensor] = []
    handles, fused = [], []
    for module in attention_modules(model):
        if isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_pre_hook(_ask_for_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(lambda _m, _a, out: maps.append(out[1].detach())))
        else:
            fused.append((module, getattr(module, "fused_attn", False)))
            module.fused_attn = False
            handles.append(module.attn_drop.register_forward_hook(lambda _m, inp, _o: maps.append(inp[0].detach())))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in fused:
            module.fused_attn = flag


def capture_attention(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Run the vision tower on ``images`` (B, C, H, W) and return its attention probabilities per layer.

    Returns
    -------
    list of torch.Tensor
        One (B, heads, T, T) tensor per block, T = prefix tokens (CLS, registers) + patches.
    """
    with record_attention(model) as maps, torch.no_grad():
        _tower(model)(images)
    return maps


def _layers(attentions: Sequence[torch.Tensor], residual: float) -> torch.Tensor:
    """Head-averaged, residual-augmented, row-normalised attention, (L, B, T, T) in float64."""
    if not attentions or len({tuple(a.shape) for a in attentions}) != 1 or attentions[0].ndim not in (3, 4):
        raise ConfigError(
            "attention maps must be a non-empty list of equal-shaped tensors",
            expected="(B, heads, T, T) or (heads, T, T) per layer",
            found=str([tuple(a.shape) for a in attentions][:3]),
        )
    if not 0.0 <= residual <= 1.0:
        raise ConfigError("residual weight out of range", expected="0 <= residual <= 1", found=str(residual))
    stack = torch.stack([a if a.ndim == 4 else a[None] for a in attentions]).double().mean(dim=2)
    eye = torch.eye(stack.shape[-1], dtype=stack.dtype, device=stack.device)
    aug = (1.0 - residual) * stack + residual * eye
    return aug / aug.sum(dim=-1, keepdim=True)


def rollout(attentions: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout: the product over layers of row-normalised ``(1 - residual) A + residual I``.

    Parameters
    ----------
    attentions : sequence of torch.Tensor
        Per layer (B, heads, T, T) or (heads, T, T), first layer first; heads are averaged.
    residual : float
        Weight of the identity (the residual connection); 0.5 in Abnar & Zuidema.

    Returns
    -------
    torch.Tensor
        (B, T, T) float64; row i is a distribution over input tokens for output token i.

    Examples
    --------
    >>> a1 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])      # one head
    >>> a2 = torch.tensor([[[0.2, 0.8], [0.6, 0.4]]])
    >>> rollout([a1, a2])[0].round(decimals=6).tolist()
    [[0.7, 0.3], [0.475, 0.525]]
    """
    layers = _layers(attentions, residual)
    joint = layers[0]
    for layer in layers[1:]:
        joint = layer @ joint
    return joint


def attention_flow(attentions: Sequence[torch.Tensor], token: int = 0, residual: float = 0.5) -> torch.Tensor:
    """Attention flow: maximum flow from output ``token`` at the top layer to each input token.

    The layer graph has T nodes per layer boundary; output token i of layer l is joined to its input token j
    with capacity ``(1 - residual) A_l[i, j] + residual [i == j]`` (row-normalised, heads averaged). Cost grows
    as T max-flow problems over L T^2 edges per image: meant for small token counts.

    Parameters
    ----------
    attentions : sequence of torch.Tensor
        As in :func:`rollout`.
    token : int
        The output token whose flow is traced (0 = CLS).
    residual : float
        As in :func:`rollout`.

    Returns
    -------
    torch.Tensor
        (B, T) float64 flow values (resolution 2^-24).

    Examples
    --------
    >>> a = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    >>> attention_flow([a, a])[0].tolist()                # sum over m of min(A2[0, m], A1[m, j])
    [1.0, 0.5]
    """
    layers = _layers(attentions, residual).cpu().numpy()
    n_layers, batch, t, _ = layers.shape
    if not -t <= token < t:
        raise ConfigError("token index out of range", expected=f"an index in [0, {t})", found=str(token))
    # edges from node (l + 1, i) to node (l, j), node id = layer * t + token
    rows = (np.arange(1, n_layers + 1)[:, None, None] * t + np.arange(t)[None, :, None]).repeat(t, axis=2)
    cols = (np.arange(n_layers)[:, None, None] * t + np.arange(t)[None, None, :]).repeat(t, axis=1)
    flows = torch.zeros(batch, t, dtype=torch.float64)
    for b in progress(range(batch), desc="attention flow", total=batch):
        caps = np.rint(layers[:, b] * _FLOW_UNITS).astype(np.int32)
        graph = csr_matrix((caps.ravel(), (rows.ravel(), cols.ravel())), shape=((n_layers + 1) * t,) * 2)
        source = n_layers * t + token % t
        for j in range(t):
            flows[b, j] = maximum_flow(graph, source, j).flow_value / _FLOW_UNITS
    return flows


def _grid(model: nn.Module, n_tokens: int) -> tuple[int, int]:
    tower = _tower(model)
    grid = getattr(tower, "grid_size", None) or getattr(getattr(tower, "patch_embed", None), "grid_size", None)
    if grid is None:
        side = int((n_tokens - 1) ** 0.5)
        grid = (side, side)
    return int(grid[0]), int(grid[1])


def attention_map(
    model: nn.Module, image: torch.Tensor, method: str = "rollout", token: int = 0, residual: float = 0.5
) -> torch.Tensor:
    """Rollout or flow of one image from ``token`` (0 = CLS) to the patches, as a (grid_h, grid_w) map.

    Parameters
    ----------
    model : nn.Module
        An open_clip CLIP model / vision tower or a timm ViT, in eval mode.
    image : torch.Tensor
        (C, H, W) or (1, C, H, W), preprocessed for the model.
    method : {"rollout", "flow"}
        Abnar & Zuidema's rollout or flow.
    token, residual
        As in :func:`rollout` / :func:`attention_flow`.

    Returns
    -------
    torch.Tensor
        (grid_h, grid_w) float64: the token's row restricted to patch tokens (prefix tokens dropped, not
        renormalised).

    Examples
    --------
    >>> import timm
    >>> vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32).eval()
    >>> attention_map(vit, torch.zeros(3, 32, 32)).shape
    torch.Size([2, 2])
    """
    if method not in ("rollout", "flow"):
        raise ConfigError("unknown attention map method", expected="'rollout' or 'flow'", found=repr(method))
    batch = image[None] if image.ndim == 3 else image
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise ConfigError("attention_map takes one image", expected="(C, H, W) or (1, C, H, W)",
                          found=f"shape {tuple(image.shape)}")
    maps = capture_attention(model, batch)
    t = maps[0].shape[-1]
    if method == "rollout":
        row = rollout(maps, residual)[0, token]
    else:
        row = attention_flow(maps, token, residual)[0]
    gh, gw = _grid(model, t)
    return row[t - gh * gw:].reshape(gh, gw)
