"""Triton kernels of the fused cross-attention for many queries over few keys (imported lazily, needs triton).

Layout: q (Bq, H, Lq, d) with Bq in {1, B} (batch stride 0 when shared), k (B, H, Lk, d), v (B, H, Lk, dv),
padding mask (B, Lk) uint8 (1 = padding), log-sum-exp (B, H, Lq) float32. Head dims are padded to the block
width (a power of two >= 16) by masked loads, so 40 or 80 work. Scores, softmax and accumulators are float32.

Optional readout epilogue: ``R[b, h, m] = <O[b, h, m, :], W[m, h, :]>`` is stored instead of O, so O is never
written; the caller sums R over heads. In the backward, dO is rebuilt as ``g[b, m] * W[m, h, :]``.

Kernels
-------
``fwd``: grid (query blocks, B * H); online softmax over key blocks.
``bwd_dq``: grid (query blocks, H), loops over the batch inside so that shared queries (and the readout weight)
get their gradient summed over the batch without atomics; also stores Delta = rowsum(dO * O) - dlse.
``bwd_dkdv``: grid (key blocks, B * H, splits); each split walks over a share of the query blocks and writes a
float32 partial dK/dV that the caller sums (Lq >> Lk leaves too few key blocks to fill a GPU otherwise).
"""

from __future__ import annotations

import triton
import triton.language as tl

# running-max start: a fully padded first key block then gives exp(-inf) = 0, not NaN (a constexpr: compiled
# Triton reads no other module globals, though the interpreter does)
_FINITE_NEG = tl.constexpr(-1.0e30)


@triton.jit
def _key_block(K, V, PAD, b, h, n, skb, skh, skn, skd, svb, svh, svn, svd, spb, spn, LK, D, DV, offs_d, offs_dv,
               HAS_PAD: tl.constexpr):
    """Keys and values at positions ``n`` of batch ``b``, head ``h``, and which of them to attend (in range, not
    padding)."""
    keep = n < LK
    k = tl.load(K + b * skb + h * skh + n[:, None] * skn + offs_d[None, :] * skd,
                mask=keep[:, None] & (offs_d[None, :] < D), other=0.0)
    v = tl.load(V + b * svb + h * svh + n[:, None] * svn + offs_dv[None, :] * svd,
                mask=keep[:, None] & (offs_dv[None, :] < DV), other=0.0)
    if HAS_PAD:
        keep = keep & (tl.load(PAD + b * spb + n * spn, mask=n < LK, other=1) == 0)
    return k, v, keep


@triton.jit
def fwd(Q, K, V, PAD, O, LSE, W, R,
        sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, spb, spn,
        sob, soh, som, sod, swm, swh, swd,
        H, LQ, LK, D, DV, scale,
        HAS_PAD: tl.constexpr, READOUT: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    m_ok = offs_m < LQ
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=m_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) + _FINITE_NEG
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    for start_n in range(0, LK, BLOCK_N):
        k, v, keep = _key_block(K, V, PAD, b, h, start_n + offs_n, skb, skh, skn, skd, svb, svh, svn, svd, spb, spn,
                                LK, D, DV, offs_d, offs_dv, HAS_PAD)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(keep[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(LSE + pid_bh * LQ + offs_m, m_i + tl.log(l_i), mask=m_ok)
    dv_ok = m_ok[:, None] & (offs_dv[None, :] < DV)
    if READOUT:
        w = tl.load(W + offs_m[:, None] * swm + h * swh + offs_dv[None, :] * swd, mask=dv_ok, other=0.0)
        tl.store(R + pid_bh * LQ + offs_m, tl.sum(out * w.to(tl.float32), 1), mask=m_ok)
    else:
        tl.store(O + b * sob + h * soh + offs_m[:, None] * som + offs_dv[None, :] * sod,
                 out.to(O.dtype.element_ty), mask=dv_ok)


@triton.jit
def bwd_dq(Q, K, V, PAD, O, DO, LSE, DLSE, DELTA, DQ, W, R, G, DW,
           sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, spb, spn,
           sob, soh, som, sod, sdob, sdoh, sdom, sdod, sdqb, sdqh, sdqm, sdqd, swm, swh, swd,
           B, H, LQ, LK, D, DV, scale,
           SHARED_Q: tl.constexpr, HAS_PAD: tl.constexpr, HAS_DLSE: tl.constexpr, READOUT: tl.constexpr,
           PRECISION: tl.constexpr,
           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_m = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    m_ok = offs_m < LQ
    d_ok = m_ok[:, None] & (offs_d[None, :] < D)
    dv_ok = m_ok[:, None] & (offs_dv[None, :] < DV)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    dw = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    if READOUT:
        w = tl.load(W + offs_m[:, None] * swm + h * swh + offs_dv[None, :] * swd, mask=dv_ok, other=0.0)
    for b32 in range(B):
        b = h * 0 + b32  # int64, so b * stride cannot overflow 32 bits
        row = (b * H + h) * LQ + offs_m
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd, mask=d_ok, other=0.0)
        if READOUT:
            g = tl.load(G + b * LQ + offs_m, mask=m_ok, other=0.0)
            do = g[:, None] * w.to(tl.float32)
            delta = g * tl.load(R + row, mask=m_ok, other=0.0)
        else:
            do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_dv[None, :] * sdod,
                         mask=dv_ok, other=0.0).to(tl.float32)
            o = tl.load(O + b * sob + h * soh + offs_m[:, None] * som + offs_dv[None, :] * sod,
                        mask=dv_ok, other=0.0).to(tl.float32)
            delta = tl.sum(do * o, 1)
        if HAS_DLSE:
            delta = delta - tl.load(DLSE + row, mask=m_ok, other=0.0)
        tl.store(DELTA + row, delta, mask=m_ok)
        lse = tl.load(LSE + row, mask=m_ok, other=0.0)
        if not SHARED_Q:
            dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        o_acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
        for start_n in range(0, LK, BLOCK_N):
            k, v, keep = _key_block(K, V, PAD, b, h, start_n + offs_n, skb, skh, skn, skd, svb, svh, svn, svd, spb, spn,
                                    LK, D, DV, offs_d, offs_dv, HAS_PAD)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            p = tl.where(keep[None, :] & m_ok[:, None], tl.exp(s - lse[:, None]), 0.0)
            dp = tl.dot(do.to(v.dtype), tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
            if READOUT:
                o_acc += tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        if READOUT:
            dw += g[:, None] * o_acc
        if not SHARED_Q:
            tl.store(DQ + b * sdqb + h * sdqh + offs_m[:, None] * sdqm + offs_d[None, :] * sdqd,
                     (dq * scale).to(DQ.dtype.element_ty), mask=d_ok)
    if SHARED_Q:
        tl.store(DQ + h * sdqh + offs_m[:, None] * sdqm + offs_d[None, :] * sdqd,
                 (dq * scale).to(DQ.dtype.element_ty), mask=d_ok)
    if READOUT:
        tl.store(DW + offs_m[:, None] * swm + h * swh + offs_dv[None, :] * swd, dw, mask=dv_ok)


@triton.jit
def bwd_dkdv(Q, K, V, PAD, DO, LSE, DELTA, DK, DV_OUT, W, G,
             sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, spb, spn,
             sdob, sdoh, sdom, sdod, swm, swh, swd,
             H, LQ, LK, D, DV, scale, ROWS_PER_SPLIT,
             HAS_PAD: tl.constexpr, READOUT: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    split = tl.program_id(2).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    k, v, keep = _key_block(K, V, PAD, b, h, offs_n, skb, skh, skn, skd, svb, svh, svn, svd, spb, spn,
                            LK, D, DV, offs_d, offs_dv, HAS_PAD)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    for start_m in range(split * ROWS_PER_SPLIT, (split + 1) * ROWS_PER_SPLIT, BLOCK_M):
        m = start_m + offs_m
        m_ok = m < LQ
        row = pid_bh * LQ + m
        q = tl.load(Q + b * sqb + h * sqh + m[:, None] * sqm + offs_d[None, :] * sqd,
                    mask=m_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        if READOUT:
            g = tl.load(G + b * LQ + m, mask=m_ok, other=0.0)
            w = tl.load(W + m[:, None] * swm + h * swh + offs_dv[None, :] * swd,
                        mask=m_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
            do = (g[:, None] * w.to(tl.float32)).to(v.dtype)
        else:
            do = tl.load(DO + b * sdob + h * sdoh + m[:, None] * sdom + offs_dv[None, :] * sdod,
                         mask=m_ok[:, None] & (offs_dv[None, :] < DV), other=0.0).to(v.dtype)
        lse = tl.load(LSE + row, mask=m_ok, other=0.0)
        delta = tl.load(DELTA + row, mask=m_ok, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale
        p_t = tl.where(keep[:, None] & m_ok[None, :], tl.exp(s_t - lse[None, :]), 0.0)
        dv += tl.dot(p_t.to(v.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    base = (split * tl.num_programs(1) + pid_bh) * LK  # partial buffers are (splits, B * H, LK, D or DV)
    dk_ok = (offs_n[:, None] < LK) & (offs_d[None, :] < D)
    dv_ok = (offs_n[:, None] < LK) & (offs_dv[None, :] < DV)
    tl.store(DK + (base + offs_n[:, None]) * D + offs_d[None, :], dk * scale, mask=dk_ok)
    tl.store(DV_OUT + (base + offs_n[:, None]) * DV + offs_dv[None, :], dv, mask=dv_ok)
