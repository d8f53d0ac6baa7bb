"""Query-chunked softmax attention with an exact log-sum-exp (Rabe & Staats 2021) and a recomputing backward.

For many queries over comparatively few keys only the queries need chunking: each tile of queries sees every
key, so its softmax is exact without a running maximum. Forward and backward both walk over tiles of
(batch items, all heads, ``chunk`` query rows) and never hold more than a few (tile x Lk) score blocks, so memory
is O(chunk x Lk) beyond the inputs, the output and the gradients. The backward recomputes each tile's
probabilities instead of saving them.

Two tile engines:

- on CPU, for float32/bfloat16 with dv == d, each tile (all batch items, ``chunk`` rows) goes through torch's
  fused flash kernel (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), which returns the
  tile's log-sum-exp; the backward recomputes from it. One parallel region per tile keeps this robust on a busy
  machine, where many small operations lose their CPU time to other processes;
- everywhere else (CUDA, float64, dv != d, a gradient flowing into the log-sum-exp) plain matmul tiles: on CPU a
  tile holds one batch item (its scores stay in cache), on CUDA the whole batch (fewer, larger launches).

Shared queries (batch 1 against B key sets) are never copied per batch item beyond one tile; their gradient is
summed over the batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from braincode.kernels._checks import AttentionShape
from braincode.kernels.reference import compute_dtype

_CPU_TILE_BYTES = 4 * 2**20
_FUSED_TILE_BYTES = 16 * 2**20
_CUDA_TILE_BYTES = 256 * 2**20
_FUSED_DTYPES = (torch.float32, torch.bfloat16)


def fused_tiles(shape: AttentionShape, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether tiles run through torch's fused CPU flash kernel (CPU, float32/bfloat16, dv == d)."""
    return (
        device.type == "cpu" and dtype in _FUSED_DTYPES and shape.d == shape.dv
        and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
    )


def default_chunk_size(shape: AttentionShape, device: torch.device, dtype: torch.dtype = torch.float32) -> int:
    """Query rows per tile.

    Fused CPU tiles: the flash kernel already works in cache-sized blocks, so a tile only costs the copies of its
    slices: one tile for per-item queries, ~16 MiB of expanded rows for shared queries. Plain tiles: ~4 MiB of
    scores on CPU (one batch item, cache-sized), ~256 MiB on CUDA.

    Examples
    --------
    >>> s = AttentionShape(batch=4, bq=1, heads=8, lq=32768, lk=257, d=64, dv=64)
    >>> default_chunk_size(s, torch.device("cpu")), default_chunk_size(s, torch.device("cpu"), torch.float64)
    (2048, 510)
    """
    if fused_tiles(shape, device, dtype):  # the kernel bounds its own score blocks; tiles only cost copies
        if not shape.shared_queries:
            return shape.lq
        per_row, budget = shape.batch * shape.heads * shape.d * 4, _FUSED_TILE_BYTES
    else:
        per_row = _batch_step(shape, device) * shape.heads * shape.lk * 4
        budget = _CUDA_TILE_BYTES if device.type == "cuda" else _CPU_TILE_BYTES
    return int(min(shape.lq, max(16, budget // per_row)))


def _batch_step(shape: AttentionShape, device: torch.device) -> int:
    return shape.batch if device.type == "cuda" else 1


def _tiles(shape: AttentionShape, chunk: int, batch_step: int) -> Iterator[tuple[int, int, int, int]]:
    for b0 in range(0, shape.batch, batch_step):
        for s0 in range(0, shape.lq, chunk):
            yield b0, min(b0 + batch_step, shape.batch), s0, min(s0 + chunk, shape.lq)


class _Prepared:
    """Keys pre-scaled and transposed, values and the padding bias in the compute dtype (all Lk-sized, small)."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float) -> None:
        ct = compute_dtype(k.dtype)
        self.k_scaled = k.to(ct) * scale
        self.k_t = self.k_scaled.transpose(-1, -2)
        self.v = v.to(ct)
        self.bias = None
        if mask is not None:
            zeros = torch.zeros(mask.shape[0], 1, 1, mask.shape[1], dtype=ct, device=k.device)
            self.bias = zeros.masked_fill(mask[:, None, None, :], float("-inf"))

    def scores(self, q_tile: torch.Tensor, b0: int, b1: int) -> torch.Tensor:
        """Scaled, masked scores of one tile: (b1 - b0, H, rows, Lk)."""
        scores = torch.matmul(q_tile.to(self.k_t.dtype), self.k_t[b0:b1])
        if self.bias is not None:
            scores.add_(self.bias[b0:b1])
        return scores


def _q_tile(q: torch.Tensor, shape: AttentionShape, b0: int, b1: int, s0: int, s1: int) -> torch.Tensor:
    return q[:, :, s0:s1] if shape.bq == 1 else q[b0:b1, :, s0:s1]


def _fused_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if mask is None:
        return None
    zeros = torch.zeros(mask.shape[0], 1, 1, mask.shape[1], dtype=dtype, device=mask.device)
    return zeros.masked_fill(mask[:, None, None, :], float("-inf"))


def _fused_q_tile(q: torch.Tensor, shape: AttentionShape, s0: int, s1: int) -> torch.Tensor:
    return q[:, :, s0:s1].expand(shape.batch, -1, -1, -1)


def fused_forward(q, k, v, mask, scale, shape, chunk):
    """Forward through the fused CPU flash kernel per tile: output and float32 log-sum-exp (always)."""
    bias = _fused_bias(mask, q.dtype)
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if chunk >= shape.lq:
        return flash(_fused_q_tile(q, shape, 0, shape.lq), k, v, 0.0, False, attn_mask=bias, scale=scale)
    out = q.new_empty(shape.batch, shape.heads, shape.lq, shape.dv)
    lse = q.new_empty(shape.batch, shape.heads, shape.lq, dtype=torch.float32)
    for _, _, s0, s1 in _tiles(shape, chunk, shape.batch):
        out[:, :, s0:s1], lse[:, :, s0:s1] = flash(
            _fused_q_tile(q, shape, s0, s1), k, v, 0.0, False, attn_mask=bias, scale=scale
        )
    return out, lse


def fused_backward(q, k, v, mask, out, lse, grad_out, scale, shape, chunk):
    """Backward through the fused CPU flash kernel per tile, float32 accumulation of dK and dV."""
    bias = _fused_bias(mask, q.dtype)
    dq = torch.empty_like(q)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    for _, _, s0, s1 in _tiles(shape, chunk, shape.batch):
        dq_tile, dk_tile, dv_tile = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_out[:, :, s0:s1].contiguous(), _fused_q_tile(q, shape, s0, s1), k, v, out[:, :, s0:s1],
            lse[:, :, s0:s1], 0.0, False, attn_mask=bias, scale=scale,
        )
        dq[:, :, s0:s1] = dq_tile.sum(dim=0, keepdim=True) if shape.bq == 1 else dq_tile
        dk += dk_tile
        dv += dv_tile
    return dq, dk.to(k.dtype), dv.to(v.dtype)


def chunked_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    shape: AttentionShape,
    chunk: int,
    want_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain-matmul tiles: output (B, H, Lq, dv) in q's dtype and, if ``want_lse``, the log-sum-exp (B, H, Lq)."""
    prep = _Prepared(k, v, mask, scale)
    out = q.new_empty(shape.batch, shape.heads, shape.lq, shape.dv)
    lse = q.new_empty(shape.batch, shape.heads, shape.lq, dtype=prep.v.dtype) if want_lse else None
    for b0, b1, s0, s1 in _tiles(shape, chunk, _batch_step(shape, q.device)):
        scores = prep.scores(_q_tile(q, shape, b0, b1, s0, s1), b0, b1)
        if lse is None:
            probs = torch.softmax(scores, dim=-1)
        else:
            tile_lse = torch.logsumexp(scores, dim=-1)
            lse[b0:b1, :, s0:s1] = tile_lse
            probs = scores.sub_(tile_lse[..., None]).exp_()
        out[b0:b1, :, s0:s1] = torch.matmul(probs, prep.v[b0:b1])
    return out, lse


def chunked_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    out: torch.Tensor,
    grad_out: torch.Tensor,
    grad_lse: torch.Tensor | None,
    scale: float,
    shape: AttentionShape,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain-matmul tiles: gradients (dq, dk, dv) recomputing each tile's probabilities; shared dq summed over B."""
    prep = _Prepared(k, v, mask, scale)
    ct = prep.v.dtype
    dq = torch.zeros(q.shape, dtype=ct, device=q.device)
    dk_scaled = torch.zeros(k.shape, dtype=ct, device=k.device)
    dv = torch.zeros(v.shape, dtype=ct, device=v.device)
    for b0, b1, s0, s1 in _tiles(shape, chunk, _batch_step(shape, q.device)):
        q_tile = _q_tile(q, shape, b0, b1, s0, s1).to(ct)
        go = grad_out[b0:b1, :, s0:s1].to(ct)
        probs = torch.softmax(prep.scores(q_tile, b0, b1), dim=-1)
        # d(loss)/d(score) = P * (dP - rowsum(dO * O) + d(loss)/d(lse))
        delta = (go * out[b0:b1, :, s0:s1].to(ct)).sum(dim=-1, keepdim=True)
        if grad_lse is not None:
            delta = delta - grad_lse[b0:b1, :, s0:s1, None].to(ct)
        dv[b0:b1] += torch.matmul(probs.transpose(-1, -2), go)
        dscores = torch.matmul(go, prep.v[b0:b1].transpose(-1, -2)).sub_(delta).mul_(probs)
        dk_scaled[b0:b1] += torch.matmul(dscores.transpose(-1, -2), q_tile)
        dq_tile = torch.matmul(dscores, prep.k_scaled[b0:b1])
        if shape.bq == 1:
            dq[:, :, s0:s1] += dq_tile.sum(dim=0, keepdim=True)
        else:
            dq[b0:b1, :, s0:s1] = dq_tile
    return dq.to(q.dtype), (dk_scaled * scale).to(k.dtype), dv.to(v.dtype)


class ChunkedAttention(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, mask, the output and (fused tiles) the log-sum-exp, never probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, shape, chunk, want_lse, fused):
        if fused:
            out, lse = fused_forward(q, k, v, mask, scale, shape, chunk)
        else:
            out, lse = chunked_forward(q, k, v, mask, scale, shape, chunk, want_lse)
        ctx.save_for_backward(q, k, v, mask, out, lse)
        ctx.params = (scale, shape, chunk, fused)
        return (out, lse) if want_lse else out

    @staticmethod
    def backward(ctx, grad_out, grad_lse=None):
        q, k, v, mask, out, lse = ctx.saved_tensors
        scale, shape, chunk, fused = ctx.params
        if fused and (grad_lse is None or not grad_lse.any()):
            dq, dk, dv = fused_backward(q, k, v, mask, out, lse, grad_out, scale, shape, chunk)
        else:
            dq, dk, dv = chunked_backward(q, k, v, mask, out, grad_out, grad_lse, scale, shape, chunk)
        return dq, dk, dv, None, None, None, None, None, None
