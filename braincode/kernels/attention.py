"""Softmax attention for many queries over comparatively few keys, with interchangeable backends.

``attention`` is the one entry point used by readouts, the BrainSCUBA projection and attention maps. Shapes:
q is (B or 1, H, Lq, d) — batch 1 means the queries (e.g. learned voxel/ROI queries) are shared by every batch
item: they are never copied per item and their gradient is the sum over the batch — k is (B, H, Lk, d) and
v is (B, H, Lk, dv). The output is (B, H, Lq, dv).

Backends
--------
``reference``
    Materialises all (B, H, Lq, Lk) scores; float32 or wider inside. For tests and small problems.
``chunked``
    Query tiles with an exact log-sum-exp and a recomputing custom backward: memory O(chunk x Lk). On CPU
    (float32/bfloat16, dv == d) each tile runs through torch's fused flash kernel; see ``kernels.chunked``.
``sdpa``
    ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels); no log-sum-exp. Shared queries are
    passed as an expanded view, which torch's kernels may copy.
``triton``
    Fused CUDA kernel for Lq >> Lk (``braincode.kernels.triton``), forward and backward.
``auto``
    ``sdpa`` when nothing extra is asked (no log-sum-exp, no chunk size, no shared queries) and the shapes are
    inside the fused kernels' limits; otherwise ``triton`` on CUDA when it is installed, else ``chunked``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from braincode.errors import ConfigError
from braincode.kernels._checks import AttentionShape, check_mask, check_qkv, default_scale
from braincode.kernels.chunked import ChunkedAttention, default_chunk_size, fused_tiles
from braincode.kernels.reference import masked_scores, reference_attention

BACKENDS = ("auto", "reference", "chunked", "sdpa", "triton")
# FlashAttention-2 limits (REFERENCES.md): grid batch < 65536 and 32-bit indexing in its backward.
_FLASH_MAX_BATCH_HEADS = 65535
_FLASH_MAX_INDEX = 2**31


def _fits_fused(shape: AttentionShape) -> bool:
    rows = -(-shape.lq // 128) * 128
    index = shape.batch * shape.heads * rows * max(shape.d, 32)
    return shape.batch * shape.heads <= _FLASH_MAX_BATCH_HEADS and index <= _FLASH_MAX_INDEX


def _triton_usable(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    from braincode.kernels.triton import triton_available

    return triton_available()


def pick_backend(
    shape: AttentionShape, device: torch.device, *, return_lse: bool = False, chunk_size: int | None = None
) -> str:
    """The backend ``attention(..., backend="auto")`` uses for these sizes and requests.

    Examples
    --------
    >>> s = AttentionShape(batch=4, bq=1, heads=8, lq=4096, lk=257, d=64, dv=64)
    >>> pick_backend(s, torch.device("cpu"))
    'chunked'
    """
    plain = not return_lse and chunk_size is None and not shape.shared_queries
    if plain and _fits_fused(shape):
        return "sdpa"
    if chunk_size is None and _triton_usable(device):
        return "triton"
    return "chunked"


def _sdpa(q, k, v, scale, mask, shape):
    if shape.shared_queries:
        q = q.expand(shape.batch, -1, -1, -1)
    attn_mask = None if mask is None else ~mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    key_padding_mask: torch.Tensor | None = None,
    return_lse: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention ``softmax(scale * q k^T) v`` over padded keys, forward and backward on every backend.

    Parameters
    ----------
    q : torch.Tensor
        (B or 1, H, Lq, d). Batch 1 shares the queries over all B key sets (no copy; gradient summed over B).
    k : torch.Tensor
        (B, H, Lk, d).
    v : torch.Tensor
        (B, H, Lk, dv).
    scale : float, optional
        Score multiplier; default ``1 / sqrt(d)``.
    key_padding_mask : torch.Tensor, optional
        (B, Lk) bool. **True marks a padding key, which gets zero weight** (the ``nn.MultiheadAttention``
        convention). Every row needs at least one False.
    return_lse : bool
        Also return the log-sum-exp of the scaled scores, (B, H, Lq), float32 or wider; differentiable.
        Not available from ``sdpa``.
    chunk_size : int, optional
        Query rows per tile of ``chunked`` (default: a cache-sized tile on CPU, ~256 MiB of scores on CUDA).
    backend : {"auto", "reference", "chunked", "sdpa", "triton"}
        See the module docstring; ``auto`` uses :func:`pick_backend`.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        The output (B, H, Lq, dv) in q's dtype, and the log-sum-exp if ``return_lse``.

    Examples
    --------
    >>> q = torch.randn(1, 2, 100, 8)                       # 100 learned queries shared over the batch
    >>> k, v = torch.randn(3, 2, 5, 8), torch.randn(3, 2, 5, 8)
    >>> pad = torch.tensor([[False] * 5, [False] * 4 + [True], [False] * 3 + [True] * 2])
    >>> out = attention(q, k, v, key_padding_mask=pad, backend="chunked", chunk_size=32)
    >>> ref = attention(q, k, v, key_padding_mask=pad, backend="reference")
    >>> out.shape, torch.allclose(out, ref, atol=1e-6)
    (torch.Size([3, 2, 100, 8]), True)
    """
    shape = check_qkv(q, k, v)
    mask = check_mask(key_padding_mask, shape, q.device)
    scale = default_scale(scale, shape.d)
    if backend not in BACKENDS:
        raise ConfigError("unknown attention backend", expected=" or ".join(BACKENDS), found=repr(backend))
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError("chunk_size must be a positive integer", found=repr(chunk_size), fix="e.g. 512")
    if backend == "auto":
        backend = pick_backend(shape, q.device, return_lse=return_lse, chunk_size=chunk_size)
    if backend == "reference":
        out, lse = reference_attention(q, k, v, scale, mask)
        return (out, lse) if return_lse else out
    if backend == "chunked":
        chunk = chunk_size or default_chunk_size(shape, q.device, q.dtype)
        fused = fused_tiles(shape, q.device, q.dtype)
        return ChunkedAttention.apply(q, k, v, mask, scale, shape, chunk, return_lse, fused)
    if backend == "sdpa":
        if return_lse:
            raise ConfigError(
                "the sdpa backend cannot return the log-sum-exp", found="return_lse=True with backend='sdpa'",
                fix="use backend='chunked' (or 'auto')",
            )
        return _sdpa(q, k, v, scale, mask, shape)
    from braincode.kernels.triton import triton_attention

    return triton_attention(q, k, v, scale=scale, key_padding_mask=mask, return_lse=return_lse)


def attention_probs(
    q: torch.Tensor,
    k: torch.Tensor,
    rows: Sequence[int] | slice | torch.Tensor,
    *,
    scale: float | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention probabilities of the chosen query rows only, (B, H, n_rows, Lk), float32 or wider.

    Only the chosen rows' scores are computed, so maps of a few queries out of many cost O(n_rows x Lk).

    Parameters
    ----------
    q, k : torch.Tensor
        (B or 1, H, Lq, d) and (B, H, Lk, d), as in :func:`attention`.
    rows : sequence of int, slice or 1-D integer tensor
        Query rows wanted (indices into Lq).
    scale, key_padding_mask
        As in :func:`attention`; padded keys get probability 0.

    Examples
    --------
    >>> q, k = torch.randn(1, 1, 1000, 4), torch.randn(2, 1, 6, 4)
    >>> p = attention_probs(q, k, rows=[0, 999])
    >>> p.shape, torch.allclose(p.sum(-1), torch.ones(2, 1, 2))
    (torch.Size([2, 1, 2, 6]), True)
    """
    shape = check_qkv(q, k, None)
    mask = check_mask(key_padding_mask, shape, q.device)
    index = rows if isinstance(rows, slice) else torch.as_tensor(rows, dtype=torch.long, device=q.device)
    if isinstance(index, torch.Tensor) and (
        index.ndim != 1 or index.numel() == 0 or int(index.min()) < -shape.lq or int(index.max()) >= shape.lq
    ):
        raise ConfigError(
            "attention_probs rows are not valid query indices",
            expected=f"a non-empty 1-D list of indices in [0, {shape.lq})", found=str(rows)[:80],
        )
    scores = masked_scores(q[:, :, index], k, default_scale(scale, shape.d), mask)
    return torch.softmax(scores, dim=-1)
