"""The transformer brain encoder's decoder and readout (Adeli, Sun & Kriegeskorte 2025) as one ``nn.Module``.

As in the authors' code (``Hosseinadeli/transformer_brain_encoder``, checked against the fixture in
``tests/fixtures/routing``): the patch tokens are the memory as they are (no input projection when they already
have ``d_model`` channels); one pre-norm decoder layer whose target starts at **zero**; the learned query embedding
is added to the attention query only (a positional term, never the residual stream); keys = tokens + 2-D sine
positions, values = tokens; cross-attention with dropout on its weights, no self-attention between queries; a
ReLU feed-forward network; the decoder's final LayerNorm. Each hemisphere's vertices read the decoder outputs
through one Linear(d_model -> vertices), and a vertex sums the readouts of every query it is assigned to (its
ROIs, or the "unknown" query when it is in none). With ``per_voxel=True`` each vertex has its own query instead
(the authors' ``readout_res='voxels'``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from braincode.atlases import roi_labels as atlas_labels
from braincode.data.core import HEMISPHERES
from braincode.data.rois import roi_families, roi_labels
from braincode.errors import ConfigError, DataFormatError
from braincode.kernels import attention, attention_probs

UNKNOWN = "unknown"


def sine_positions(grid: tuple[int, int], d_model: int, temperature: float = 10000.0) -> torch.Tensor:
    """The authors' 2-D sine positional encoding of a patch grid, shape ``(gh * gw, d_model)``, row-major.

    Channels ``0..F-1`` (``F = d_model / 2``) encode the row, ``F..2F-1`` the column. A coordinate is its 1-based
    index ``k`` normalised as ``k / (size + 1e-6) * 2 pi``; channel ``2j`` is ``sin(coord / T^(2j/F))`` and
    ``2j+1`` is ``cos(coord / T^(2j/F))`` with temperature ``T``.

    Examples
    --------
    >>> pos = sine_positions((2, 3), 8)       # patch 0: row 1 of 2 (angle pi), column 1 of 3 (angle 2 pi / 3)
    >>> pos.shape, round(float(pos[0, 1]), 4), round(float(pos[0, 4]), 4)
    (torch.Size([6, 8]), -1.0, 0.866)
    """
    if d_model % 4:
        raise ConfigError("sine positions need d_model divisible by 4", found=str(d_model))
    half = d_model // 2
    dim_t = temperature ** (2 * torch.div(torch.arange(half, dtype=torch.float32), 2, rounding_mode="floor") / half)

    def encode(n: int) -> torch.Tensor:
        coord = torch.arange(1, n + 1, dtype=torch.float32) / (n + 1e-6) * (2 * math.pi)
        angle = coord[:, None] / dim_t
        return torch.stack((angle[:, 0::2].sin(), angle[:, 1::2].cos()), dim=2).flatten(1)

    gh, gw = grid
    rows = encode(gh)[:, None, :].expand(gh, gw, half)
    cols = encode(gw)[None, :, :].expand(gh, gw, half)
    return torch.cat([rows, cols], dim=-1).reshape(gh * gw, d_model)


def _ordered_names(voxels: pd.DataFrame, family: str) -> list[str]:
    """A family's ROI names in atlas label order (the authors' query order), then any others as they appear."""
    present = [n for n in dict.fromkeys(roi_labels(voxels, family)) if n]
    try:
        known = list(atlas_labels(family).values())
    except ConfigError:  # a family the shipped atlas does not describe: keep the order of appearance
        known = []
    return [n for n in known if n in present] + [n for n in present if n not in known]


def roi_query_masks(voxels: pd.DataFrame, families: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """The authors' query assignment: one query per ROI per hemisphere plus an ``"unknown"`` query.

    Queries run hemisphere by hemisphere (``lh`` first), then family by family in ``families`` order, then by
    atlas label; each hemisphere ends with its ``unknown`` query, read by its vertices that are in no ROI. A
    vertex in several ROIs is assigned to all of them (its prediction is the sum of their readouts).

    Parameters
    ----------
    voxels : DataFrame
        The voxel table (``hemisphere`` plus the ROI-family columns of :mod:`braincode.data.rois`).
    families : list of str, optional
        ROI families to use (default every family of the table).

    Returns
    -------
    masks : ndarray of shape (n_queries, n_voxels), int64
        0/1 assignment of voxels (table order) to queries.
    labels : list of str
        ``"lh/FFA-1"``, ..., ``"lh/unknown"``, ``"rh/..."``.

    Examples
    --------
    >>> vox = pd.DataFrame({"hemisphere": ["lh", "lh", "lh", "rh"], "roi:floc-faces": ["FFA-1", "", "OFA", ""],
    ...                     "roi:floc-bodies": ["EBA", "", "", ""]})
    >>> masks, labels = roi_query_masks(vox, ["floc-bodies", "floc-faces"])
    >>> labels
    ['lh/EBA', 'lh/OFA', 'lh/FFA-1', 'lh/unknown', 'rh/unknown']
    >>> masks[:, 0].tolist()  # the first vertex is in EBA and FFA-1
    [1, 0, 1, 0, 0]
    """
    families = roi_families(voxels) if families is None else list(families)
    if "hemisphere" not in voxels.columns:
        raise ConfigError("ROI queries are per hemisphere", expected="a 'hemisphere' column in the voxel table",
                          found=str(list(voxels.columns)[:10]))
    hemis = voxels["hemisphere"].astype(str).to_numpy()
    rows, labels = [], []
    for hemi in [h for h in HEMISPHERES if h in hemis] + sorted(set(hemis) - set(HEMISPHERES)):
        inside = hemis == hemi
        any_roi = np.zeros(len(voxels), dtype=bool)
        for family in families:
            names = roi_labels(voxels, family)
            for name in _ordered_names(voxels[inside], family):
                member = inside & (names == name)
                rows.append(member)
                labels.append(f"{hemi}/{name}")
                any_roi |= member
        rows.append(inside & ~any_roi)
        labels.append(f"{hemi}/{UNKNOWN}")
    return np.stack(rows).astype(np.int64), labels


class TokenStandardizer(nn.Module):
    """Drops prefix tokens and, when ``enabled``, z-scores each feature with training statistics (buffers)."""

    def __init__(self, d_in: int, num_prefix_tokens: int, enabled: bool = True) -> None:
        super().__init__()
        self.num_prefix_tokens, self.enabled = num_prefix_tokens, enabled
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("scale", torch.ones(d_in))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, self.num_prefix_tokens:]
        return (patches - self.mean) / self.scale if self.enabled else patches

    def set_statistics(self, tokens: np.ndarray, batch_size: int = 32) -> None:
        """Per-feature mean and standard deviation over stimuli and patch tokens, in float64, batch by batch."""
        if not self.enabled:
            return
        total, square, count = np.zeros(self.mean.numel()), np.zeros(self.mean.numel()), 0
        for start in range(0, len(tokens), batch_size):
            x = np.asarray(tokens[start:start + batch_size], dtype=np.float64)[:, self.num_prefix_tokens:]
            x = x.reshape(-1, x.shape[-1])
            total, square, count = total + x.sum(0), square + (x * x).sum(0), count + len(x)
        mean = total / count
        std = np.sqrt(np.maximum(square / count - mean**2, 0.0))
        self.mean.copy_(torch.from_numpy(mean))
        self.scale.copy_(torch.from_numpy(np.where(std > 1e-8, std, 1.0)))


def maybe_checkpoint(fn, *args: torch.Tensor) -> torch.Tensor:
    """Run ``fn(*args)``, recomputing it in the backward pass when gradients are on (memory of one chunk only)."""
    if torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def voxel_chunks(n_voxels: int, chunk: int) -> list[slice]:
    """Consecutive slices of at most ``chunk`` voxels."""
    return [slice(s, min(s + chunk, n_voxels)) for s in range(0, n_voxels, chunk)]


class RoutingModule(nn.Module):
    """The published decoder layer and per-hemisphere readout (see the module docstring).

    Parameters
    ----------
    d_in : int
        Feature size of the tokens; a Linear input projection is added only when it differs from ``d_model``
        (the authors' ``input_proj`` for non-ViT backbones).
    query_masks : Tensor of shape (n_queries, n_voxels)
        0/1 assignment of voxels to queries (:func:`roi_query_masks`); ignored with ``per_voxel``.
    n_voxels : int
        Number of outputs.
    per_voxel : bool
        One query per voxel, decoded ``voxel_chunk`` at a time (each chunk recomputed in the backward pass).
    d_model, n_heads, d_ff, dropout : int, int, int, float
        Decoder size; ``dropout`` applies to the attention weights, the residual branches and the FFN.
    num_prefix_tokens : int
        Leading non-patch tokens to drop.
    standardize_tokens : bool
        Z-score the token features with training statistics first (not in the paper).
    grid : (int, int) or None
        Patch grid; ``None``: square, from the token count of each batch.
    backend : str
        :func:`braincode.kernels.attention` backend (used without attention dropout).
    """

    def __init__(self, d_in: int, query_masks: torch.Tensor | None, n_voxels: int, *, per_voxel: bool = False,
                 d_model: int = 768, n_heads: int = 16, d_ff: int = 1024, dropout: float = 0.1,
                 num_prefix_tokens: int = 0, standardize_tokens: bool = False, grid: tuple[int, int] | None = None,
                 backend: str = "auto", voxel_chunk: int = 1024) -> None:
        super().__init__()
        if d_model % n_heads or d_model % 4:
            raise ConfigError("d_model must be a multiple of n_heads and of 4",
                              found=f"d_model={d_model}, n_heads={n_heads}")
        self.n_heads, self.p_drop, self.backend, self.voxel_chunk = n_heads, dropout, backend, voxel_chunk
        self.per_voxel, self.grid = per_voxel, None if grid is None else (int(grid[0]), int(grid[1]))
        self.standardize = TokenStandardizer(d_in, num_prefix_tokens, standardize_tokens)
        self.input_proj = nn.Linear(d_in, d_model) if d_in != d_model else nn.Identity()
        n_queries = n_voxels if per_voxel else int(query_masks.shape[0])
        self.query_embed = nn.Parameter(torch.randn(n_queries, d_model))
        self.norm1, self.norm3, self.norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        for weight in (self.in_proj_weight, self.out_proj.weight, self.linear1.weight, self.linear2.weight):
            nn.init.xavier_uniform_(weight)  # the authors' Transformer._reset_parameters
        nn.init.zeros_(self.out_proj.bias)
        bound = 1.0 / math.sqrt(d_model)  # nn.Linear's default, as the authors' lh_embed / rh_embed (rows: see below)
        self.readout_weight = nn.Parameter(torch.empty(n_voxels, d_model).uniform_(-bound, bound))
        self.readout_bias = nn.Parameter(torch.empty(n_voxels).uniform_(-bound, bound))
        masks = torch.zeros(0, n_voxels) if per_voxel else torch.as_tensor(query_masks).float()
        self.register_buffer("query_masks", masks)
        order = torch.arange(n_voxels)
        if not per_voxel:
            if not bool((masks.sum(0) > 0).all()):
                raise DataFormatError("every voxel must be assigned to at least one query",
                                      fix="add an 'unknown' query row for voxels in no ROI (roi_query_masks does)")
            first = masks.argmax(0)  # each voxel's first query: its readout row sits in that query's block
            order = torch.argsort(first, stable=True)
            self._block_sizes = torch.bincount(first, minlength=n_queries).tolist()
            extra = masks.clone()
            extra[first, torch.arange(n_voxels)] = 0  # the further queries of voxels in several ROIs
            pairs = extra.nonzero()  # sorted by query
            self.register_buffer("_extra_row", torch.argsort(order)[pairs[:, 1]], persistent=False)
            self._extra_counts = torch.bincount(pairs[:, 0], minlength=n_queries).tolist()
            self.register_buffer("_count", masks.sum(0)[order], persistent=False)
        # ROI mode keeps the readout rows grouped by first query (vertex_order), so that a forward pass reads each
        # query's rows as one slice instead of gathering 40k x d rows every step
        self.register_buffer("vertex_order", order, persistent=False)
        self.register_buffer("_unsort", torch.argsort(order), persistent=False)
        self._positions: dict[tuple, torch.Tensor] = {}

    def positions(self, n_patches: int, device: torch.device, d_model: int) -> torch.Tensor:
        """Sine positions of the patch grid (square when ``grid`` is None), cached per size and device."""
        grid = self.grid
        if grid is None:
            side = math.isqrt(n_patches)
            grid = (side, side)
        if grid[0] * grid[1] != n_patches:
            raise DataFormatError("the tokens do not match the readout's patch grid",
                                  expected=f"{grid[0] * grid[1]} patch tokens (grid {grid})", found=str(n_patches),
                                  fix="pass grid=(rows, cols) and the right num_prefix_tokens")
        key = (grid, str(device))
        if key not in self._positions:
            self._positions[key] = sine_positions(grid, d_model).to(device)
        return self._positions[key]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def memory(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (tokens + sine positions) and values (tokens) after their projections, ``(B, H, P, d_head)``."""
        memory = self.input_proj(self.standardize(tokens))
        d = memory.shape[-1]
        pos = self.positions(memory.shape[1], memory.device, d).to(memory.dtype)
        w_k, w_v = self.in_proj_weight[d:2 * d], self.in_proj_weight[2 * d:]
        b_k, b_v = self.in_proj_bias[d:2 * d], self.in_proj_bias[2 * d:]
        return self._heads(F.linear(memory + pos, w_k, b_k)), self._heads(F.linear(memory, w_v, b_v))

    def _query_heads(self, rows: slice | torch.Tensor) -> torch.Tensor:
        """Attention queries: norm1(zero target) + query embedding, projected, ``(1, H, Lq, d_head)``."""
        embed = self.query_embed[rows]
        d = embed.shape[-1]
        target = self.norm1(embed.new_zeros(1, d))
        return self._heads(F.linear(target + embed, self.in_proj_weight[:d], self.in_proj_bias[:d])[None])

    def decode(self, rows: slice, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Decoder output after the final LayerNorm, ``(B, Lq, d_model)``, for the queries ``rows``."""
        q = self._query_heads(rows)
        if self.training and self.p_drop > 0:  # dropout on the attention weights, as nn.MultiheadAttention
            attended = F.scaled_dot_product_attention(q.expand(len(keys), -1, -1, -1), keys, values,
                                                      dropout_p=self.p_drop)
        else:
            attended = attention(q, keys, values, backend=self.backend)
        b, h, lq, dh = attended.shape
        drop = self.p_drop if self.training else 0.0
        target = F.dropout(self.out_proj(attended.transpose(1, 2).reshape(b, lq, h * dh)), drop)  # zero + attn
        hidden = F.dropout(F.relu(self.linear1(self.norm3(target))), drop)
        target = target + F.dropout(self.linear2(hidden), drop)
        return self.norm(target)

    def _voxel_chunk(self, rows: slice, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        out = self.decode(rows, keys, values)
        return (out * self.readout_weight[rows]).sum(-1) + self.readout_bias[rows]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keys, values = self.memory(tokens)
        if self.per_voxel:
            parts = [maybe_checkpoint(lambda k, v, r=rows: self._voxel_chunk(r, k, v), keys, values)
                     for rows in voxel_chunks(len(self.readout_bias), self.voxel_chunk)]
            return torch.cat(parts, dim=1)
        out = self.decode(slice(None), keys, values)
        blocks = self.readout_weight.split(self._block_sizes)
        pred = torch.cat([out[:, q] @ w.T for q, w in enumerate(blocks) if len(w)], 1)
        if len(self._extra_row):
            extra = self.readout_weight[self._extra_row].split(self._extra_counts)
            parts = [out[:, q] @ w.T for q, w in enumerate(extra) if len(w)]
            pred = pred.index_add(1, self._extra_row, torch.cat(parts, 1))
        return (pred + self.readout_bias[self.vertex_order] * self._count)[:, self._unsort]

    def vertex_weight(self) -> torch.Tensor:
        """The readout weights ``(n_voxels, d_model)`` in voxel order (the authors' ``lh_embed``/``rh_embed`` rows)."""
        return self.readout_weight[self._unsort]

    def set_vertex_weight(self, weight: torch.Tensor) -> None:
        """Set the readout weights from a ``(n_voxels, d_model)`` tensor in voxel order."""
        with torch.no_grad():
            self.readout_weight.copy_(torch.as_tensor(weight)[self.vertex_order])

    def per_query(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every voxel's readout of every query, ``(B, n_voxels, n_queries)`` (before the mask-weighted sum)."""
        keys, values = self.memory(tokens)
        out = self.decode(slice(None), keys, values)
        return (out @ self.vertex_weight().T).transpose(1, 2) + self.readout_bias[:, None]

    def attention_maps(self, tokens: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """Each query's attention over the patches, averaged over heads: ``(B, Lq, n_patches)``, rows sum to 1."""
        keys, _ = self.memory(tokens)
        rows = slice(None) if queries is None else queries
        return attention_probs(self._query_heads(rows), keys, slice(None)).mean(1)
