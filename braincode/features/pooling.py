"""Turn token maps (n, T, D) into vectors for linear encoders."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from braincode.errors import ConfigError, DataFormatError

POOL_MODES = ("mean", "cls", "grid")
_ROWS_PER_STEP = 256


def pool_tokens(
    tokens: np.ndarray,
    *,
    num_prefix_tokens: int,
    grid: tuple[int, int],
    mode: str = "mean",
    out_grid: int = 4,
) -> np.ndarray:
    """Pool a token map (n, T, D) with ``T = num_prefix_tokens + gh * gw`` into one vector per stimulus.

    Parameters
    ----------
    tokens : ndarray of shape (n, T, D)
        e.g. ``extract(...)["blocks.3"]`` (may be memory-mapped; read in slices of rows).
    num_prefix_tokens : int
        Class/register tokens before the patch tokens (``Extractor.num_prefix_tokens``).
    grid : (int, int)
        Patch grid (gh, gw), row-major (``Extractor.grid``).
    mode : {"mean", "cls", "grid"}
        ``"mean"``: mean of the patch tokens, (n, D). ``"cls"``: the first prefix token, (n, D).
        ``"grid"``: adaptive average pooling of the patch grid to ``out_grid`` x ``out_grid`` cells (PyTorch's
        ``adaptive_avg_pool2d`` bins), flattened cell by cell, row-major, with the D features of each cell
        together: (n, out_grid * out_grid * D).
    out_grid : int
        Cells per side for ``mode="grid"``; at most the smaller grid side.

    Returns
    -------
    ndarray, float32

    Examples
    --------
    >>> t = np.arange(1 * 5 * 1, dtype=np.float32).reshape(1, 5, 1)  # 1 class token + a 2x2 grid
    >>> pool_tokens(t, num_prefix_tokens=1, grid=(2, 2), mode="mean")
    array([[2.5]], dtype=float32)
    >>> pool_tokens(t, num_prefix_tokens=1, grid=(2, 2), mode="grid", out_grid=1)
    array([[2.5]], dtype=float32)
    """
    if mode not in POOL_MODES:
        raise ConfigError(
            f"unknown pooling mode {mode!r}", expected=" or ".join(POOL_MODES), found=repr(mode)
        )
    if tokens.ndim != 3:
        raise DataFormatError(
            "pool_tokens needs a token map", expected="shape (n, T, D)", found=str(tokens.shape)
        )
    gh, gw = (int(g) for g in grid)
    if tokens.shape[1] != num_prefix_tokens + gh * gw:
        raise DataFormatError(
            "token count does not match the prefix tokens and patch grid",
            expected=f"T = {num_prefix_tokens} + {gh}*{gw} = {num_prefix_tokens + gh * gw}",
            found=f"T = {tokens.shape[1]} (shape {tokens.shape})",
            fix="pass the extractor's num_prefix_tokens and grid for this layer",
        )
    if mode == "cls" and num_prefix_tokens < 1:
        raise ConfigError(
            "mode='cls' needs a class token",
            expected="num_prefix_tokens >= 1",
            found=str(num_prefix_tokens),
            fix="use mode='mean' or 'grid'",
        )
    if mode == "cls":
        return np.asarray(tokens[:, 0], dtype=np.float32)
    if mode == "grid" and not 1 <= out_grid <= min(gh, gw):
        raise ConfigError(
            "out_grid does not fit the patch grid",
            expected=f"1 <= out_grid <= {min(gh, gw)}",
            found=str(out_grid),
            fix=f"pass out_grid between 1 and {min(gh, gw)}",
        )
    parts = []
    for start in range(0, len(tokens), _ROWS_PER_STEP):
        # a copy: the tokens may be a read-only memory map of the cache
        chunk = torch.tensor(tokens[start : start + _ROWS_PER_STEP], dtype=torch.float32)
        parts.append(pool_token_tensor(chunk, num_prefix_tokens=num_prefix_tokens, grid=(gh, gw), mode=mode,
                                       out_grid=out_grid))
    return torch.cat(parts).numpy()


def pool_token_tensor(
    tokens: torch.Tensor, *, num_prefix_tokens: int, grid: tuple[int, int], mode: str = "mean", out_grid: int = 4
) -> torch.Tensor:
    """The pooling of :func:`pool_tokens` on a torch tensor, differentiable (the one implementation of it).

    Inputs are not checked here (:func:`pool_tokens` checks them); gradients flow back to ``tokens``.

    Examples
    --------
    >>> t = torch.arange(5.0).reshape(1, 5, 1)
    >>> pool_token_tensor(t, num_prefix_tokens=1, grid=(2, 2), mode="mean").tolist()
    [[2.5]]
    """
    if mode == "cls":
        return tokens[:, 0]
    patches = tokens[:, num_prefix_tokens:]
    if mode == "mean":
        return patches.mean(1)
    maps = patches.reshape(len(patches), grid[0], grid[1], -1).permute(0, 3, 1, 2)
    return F.adaptive_avg_pool2d(maps, out_grid).permute(0, 2, 3, 1).reshape(len(patches), -1)
