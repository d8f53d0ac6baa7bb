"""Fused Triton cross-attention for many queries over few keys (Lq >> Lk), forward and backward.

Importing this package never imports triton; the kernels (``_kernels``) load on first use. On a machine without a
GPU the kernels run only under the Triton interpreter (``TRITON_INTERPRET=1`` set before the kernels are loaded,
CPU tensors, tiny shapes): that is how the tests check them against ``reference``.

Supports key padding masks (e.g. 197 or 257 tokens), head dims that are not powers of two (40, 80: padded to the
block width), float32 (exact "ieee" dots, no TF32), float16 and bfloat16 (float32 accumulation), shared queries
(batch 1 against B key sets; dQ summed over the batch in-kernel) and a fused readout epilogue.
"""

from __future__ import annotations

import importlib.util

import torch

from braincode.errors import ConfigError
from braincode.kernels._checks import check_mask, check_qkv, default_scale

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def triton_available() -> bool:
    """Whether triton is installed and a CUDA device is visible (the conditions for ``backend="auto"`` to use it).

    Examples
    --------
    >>> isinstance(triton_available(), bool)
    True
    """
    return importlib.util.find_spec("triton") is not None and torch.cuda.is_available()


def _check_runnable(q: torch.Tensor) -> None:
    if importlib.util.find_spec("triton") is None:
        raise ConfigError("the triton backend needs the triton package", found="triton not installed",
                          fix="pip install 'braincode[gpu]' or use backend='chunked'")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ConfigError("the triton backend supports float16, bfloat16 and float32 only", found=str(q.dtype),
                          fix="cast the inputs or use backend='chunked'")
    from braincode.kernels.triton._autograd import interpreted

    if not q.is_cuda and not interpreted():
        raise ConfigError(
            "the triton backend needs CUDA tensors", found=f"tensors on {q.device}",
            fix="move them to a GPU, use backend='chunked', or set TRITON_INTERPRET=1 before triton loads (tests)",
        )


def triton_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    key_padding_mask: torch.Tensor | None = None,
    return_lse: bool = False,
    readout_weight: torch.Tensor | None = None,
    block_m: int = 64,
    block_n: int = 64,
    splits: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fused softmax attention with the conventions of :func:`braincode.kernels.attention`.

    Parameters
    ----------
    q, k, v, scale, key_padding_mask, return_lse
        As in :func:`braincode.kernels.attention` (True in the mask = padding key).
    readout_weight : torch.Tensor, optional
        (Lq, H * dv), heads concatenated in order (``out.transpose(1, 2).reshape(B, Lq, H * dv)`` layout).
        When given, returns ``readout[b, m] = <O[b, :, m, :].flatten(), readout_weight[m]>``, shape (B, Lq),
        without ever writing O; differentiable in q, k, v and the weight.
    block_m, block_n : int
        Query and key block sizes (powers of two >= 16).
    splits : int, optional
        Query splits of the dK/dV kernel (default: enough programs to fill a GPU).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        (B, H, Lq, dv) — or (B, Lq) with ``readout_weight`` — in q's dtype, and the float32 log-sum-exp
        (B, H, Lq) if ``return_lse``.

    Examples
    --------
    >>> q = torch.randn(1, 8, 4096, 40, device="cuda", dtype=torch.bfloat16)  # doctest: +SKIP
    >>> k = v = torch.randn(16, 8, 257, 40, device="cuda", dtype=torch.bfloat16)  # doctest: +SKIP
    >>> triton_attention(q, k, v).shape  # doctest: +SKIP
    torch.Size([16, 8, 4096, 40])
    """
    shape = check_qkv(q, k, v)
    mask = check_mask(key_padding_mask, shape, q.device)
    _check_runnable(q)
    for name, block in (("block_m", block_m), ("block_n", block_n)):
        if block < 16 or block & (block - 1):
            raise ConfigError(f"{name} must be a power of two >= 16", found=repr(block))
    if readout_weight is not None and (
        tuple(readout_weight.shape) != (shape.lq, shape.heads * shape.dv) or readout_weight.dtype != q.dtype
        or readout_weight.device != q.device
    ):
        raise ConfigError(
            "readout_weight does not match the attention output",
            expected=f"shape ({shape.lq}, {shape.heads * shape.dv}), dtype {q.dtype} on {q.device}",
            found=f"shape {tuple(readout_weight.shape)}, dtype {readout_weight.dtype}",
        )
    from braincode.kernels.triton._autograd import Config, TritonAttention

    config = Config(shape, default_scale(scale, shape.d), block_m, block_n, splits, return_lse)
    return TritonAttention.apply(q, k, v, mask, readout_weight, config)


__all__ = ["SUPPORTED_DTYPES", "triton_attention", "triton_available"]
