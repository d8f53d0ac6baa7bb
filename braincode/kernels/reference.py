"""Materialised softmax attention: the whole (B, H, Lq, Lk) score matrix in memory. The ground truth for tests."""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half precisions, the dtype itself for float32 and float64."""
    return torch.promote_types(dtype, torch.float32)


def masked_scores(
    q: torch.Tensor, k: torch.Tensor, scale: float, key_padding_mask: torch.Tensor | None
) -> torch.Tensor:
    """``scale * q @ k^T`` with padded keys at -inf, in float32 or wider. Shape (B, H, Lq, Lk)."""
    ct = compute_dtype(q.dtype)
    scores = torch.matmul(q.to(ct), k.to(ct).transpose(-1, -2)) * scale
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return scores


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and log-sum-exp, computed by materialising every score (float32 or wider inside).

    Parameters
    ----------
    q, k, v : torch.Tensor
        (B or 1, H, Lq, d), (B, H, Lk, d), (B, H, Lk, dv); validated by the caller.
    scale : float
        Multiplies the scores.
    key_padding_mask : torch.Tensor, optional
        (B, Lk) bool, True where the key is padding.

    Returns
    -------
    out : torch.Tensor
        (B, H, Lq, dv) in q's dtype.
    lse : torch.Tensor
        (B, H, Lq) log-sum-exp of the scaled scores, float32 or wider.

    Examples
    --------
    >>> q, k = torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 3, 4)
    >>> v = torch.arange(3.0).reshape(1, 1, 3, 1)
    >>> out, lse = reference_attention(q, k, v, scale=0.5)
    >>> out.flatten().tolist()
    [1.0, 1.0]
    """
    scores = masked_scores(q, k, scale, key_padding_mask)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs, v.to(probs.dtype))
    return out.to(q.dtype), lse
