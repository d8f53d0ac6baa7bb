"""Launchers and the autograd Function of the Triton attention (imports triton and the kernels on first use)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from braincode.kernels._checks import AttentionShape

_TARGET_PROGRAMS = 1024  # dK/dV programs to aim for (a few waves on an H100's 132 SMs)


def _kernels():
    return importlib.import_module("braincode.kernels.triton._kernels")


def interpreted() -> bool:
    """Whether the loaded kernels run under the Triton interpreter (CPU tensors allowed)."""
    return type(_kernels().fwd).__name__ == "InterpretedFunction"


@dataclass(frozen=True)
class Config:
    """Sizes, scale, block sizes and requests of one call."""

    shape: AttentionShape
    scale: float
    block_m: int
    block_n: int
    splits: int | None
    want_lse: bool

    @property
    def block_d(self) -> int:
        return max(16, 1 << (self.shape.d - 1).bit_length())

    @property
    def block_dv(self) -> int:
        return max(16, 1 << (self.shape.dv - 1).bit_length())

    def meta(self) -> dict:
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_D": self.block_d,
                "BLOCK_DV": self.block_dv, "PRECISION": "ieee"}


def _strides4(t: torch.Tensor, shared_batch: bool = False) -> tuple[int, int, int, int]:
    s = t.stride()
    return (0 if shared_batch else s[0], s[1], s[2], s[3])


def _pad(mask: torch.Tensor | None, dummy: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    if mask is None:
        return dummy, 0, 0
    pad = mask.to(torch.uint8)
    return pad, pad.stride(0), pad.stride(1)


def _weight3(weight: torch.Tensor | None, cfg: Config, dummy: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    if weight is None:
        return dummy, (0, 0, 0)
    w = weight.view(cfg.shape.lq, cfg.shape.heads, cfg.shape.dv)
    return w, w.stride()


def forward(q, k, v, mask, weight, cfg: Config):
    """Launch ``fwd``: returns (O or None, R or None, lse)."""
    s = cfg.shape
    lse = torch.empty(s.batch, s.heads, s.lq, dtype=torch.float32, device=q.device)
    pad, spb, spn = _pad(mask, lse)
    w, w_strides = _weight3(weight, cfg, lse)
    readout = weight is not None
    out = lse if readout else q.new_empty(s.batch, s.heads, s.lq, s.dv)
    r = torch.empty_like(lse) if readout else lse
    grid = (triton_cdiv(s.lq, cfg.block_m), s.batch * s.heads)
    _kernels().fwd[grid](
        q, k, v, pad, out, lse, w, r,
        *_strides4(q, s.bq == 1), *k.stride(), *v.stride(), spb, spn,
        *((0, 0, 0, 0) if readout else out.stride()), *w_strides,
        s.heads, s.lq, s.lk, s.d, s.dv, cfg.scale,
        HAS_PAD=mask is not None, READOUT=readout, **cfg.meta(),
    )
    return (None, r, lse) if readout else (out, None, lse)


def backward(q, k, v, mask, weight, out, r, lse, grad, grad_lse, cfg: Config):
    """Launch ``bwd_dq`` then ``bwd_dkdv``: returns (dq, dk, dv, dweight or None)."""
    s = cfg.shape
    readout = weight is not None
    delta = torch.empty_like(lse)
    pad, spb, spn = _pad(mask, lse)
    w, w_strides = _weight3(weight, cfg, lse)
    g = grad.float().contiguous() if readout else lse
    do = lse if readout else grad
    do_strides = (0, 0, 0, 0) if readout else do.stride()
    o_strides = (0, 0, 0, 0) if readout else out.stride()
    dlse = lse if grad_lse is None else grad_lse.float().contiguous()
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dw = torch.empty(s.lq, s.heads, s.dv, dtype=torch.float32, device=q.device) if readout else lse
    kernels = _kernels()
    kernels.bwd_dq[(triton_cdiv(s.lq, cfg.block_m), s.heads)](
        q, k, v, pad, lse if readout else out, do, lse, dlse, delta, dq, w, lse if r is None else r, g, dw,
        *_strides4(q, s.bq == 1), *k.stride(), *v.stride(), spb, spn,
        *o_strides, *do_strides, *dq.stride(), *w_strides,
        s.batch, s.heads, s.lq, s.lk, s.d, s.dv, cfg.scale,
        SHARED_Q=s.bq == 1, HAS_PAD=mask is not None, HAS_DLSE=grad_lse is not None, READOUT=readout,
        **cfg.meta(),
    )
    q_blocks, k_blocks = triton_cdiv(s.lq, cfg.block_m), triton_cdiv(s.lk, cfg.block_n)
    splits = cfg.splits or triton_cdiv(_TARGET_PROGRAMS, k_blocks * s.batch * s.heads)
    rows_per_split = triton_cdiv(q_blocks, min(max(1, splits), q_blocks)) * cfg.block_m
    splits = triton_cdiv(s.lq, rows_per_split)
    dk_part = torch.empty(splits, s.batch * s.heads, s.lk, s.d, dtype=torch.float32, device=q.device)
    dv_part = torch.empty(splits, s.batch * s.heads, s.lk, s.dv, dtype=torch.float32, device=q.device)
    kernels.bwd_dkdv[(k_blocks, s.batch * s.heads, splits)](
        q, k, v, pad, do, lse, delta, dk_part, dv_part, w, g,
        *_strides4(q, s.bq == 1), *k.stride(), *v.stride(), spb, spn, *do_strides, *w_strides,
        s.heads, s.lq, s.lk, s.d, s.dv, cfg.scale, rows_per_split,
        HAS_PAD=mask is not None, READOUT=readout, **cfg.meta(),
    )
    dk = dk_part.sum(0).view(k.shape).to(k.dtype)
    dv = dv_part.sum(0).view(v.shape).to(v.dtype)
    dweight = dw.view(s.lq, s.heads * s.dv).to(weight.dtype) if readout else None
    return dq, dk, dv, dweight


def triton_cdiv(a: int, b: int) -> int:
    """Ceiling division."""
    return -(-a // b)


class TritonAttention(torch.autograd.Function):
    """Saves q, k, v, mask, weight, O (or R) and the log-sum-exp; the backward recomputes the probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, mask, weight, cfg):
        out, r, lse = forward(q, k, v, mask, weight, cfg)
        ctx.save_for_backward(q, k, v, mask, weight, out, r, lse)
        ctx.cfg = cfg
        result = out if weight is None else r.sum(dim=1).to(q.dtype)
        return (result, lse) if cfg.want_lse else result

    @staticmethod
    def backward(ctx, grad, grad_lse=None):
        q, k, v, mask, weight, out, r, lse = ctx.saved_tensors
        dq, dk, dv, dweight = backward(q, k, v, mask, weight, out, r, lse, grad, grad_lse, ctx.cfg)
        return dq, dk, dv, None, dweight, None
