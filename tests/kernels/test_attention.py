"""attention / attention_probs: every backend against the materialised float64 reference, and bad input."""

from __future__ import annotations

import importlib

import pytest
import torch

from braincode.errors import ConfigError
from braincode.kernels import attention, attention_probs, pick_backend
from braincode.kernels._checks import AttentionShape

attention_module = importlib.import_module("braincode.kernels.attention")  # the package's `attention` is the function

SHAPES = [  # batch, shared, heads, lq, lk, d, dv  (odd head dims, Lq >> Lk, ragged padding)
    (3, True, 2, 70, 13, 40, 40),
    (2, False, 3, 33, 9, 24, 17),
    (1, False, 1, 5, 31, 80, 80),
]


def _run(backend, mask, chunk=None):
    kwargs = {"chunk_size": chunk} if chunk else {}
    return lambda q, k, v: attention(q, k, v, key_padding_mask=mask, backend=backend, **kwargs)


@pytest.mark.parametrize("backend", ["chunked", "chunked-plain", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_backend_matches_reference(kh, monkeypatch, backend, dtype, shape):
    """chunked-plain: the plain-matmul tiles that CUDA and float64 use, forced on CPU float32/bfloat16 too."""
    if backend == "chunked-plain":
        monkeypatch.setattr(attention_module, "fused_tiles", lambda *args: False)
        backend = "chunked"
    batch, shared, heads, lq, lk, d, dv = shape
    q, k, v, mask = kh.make_problem(sum(shape), batch=batch, shared=shared, heads=heads, lq=lq, lk=lk, d=d,
                                    dv=dv, dtype=dtype)
    out, grads = kh.grads_of(_run(backend, mask, chunk=16 if backend == "chunked" else None), q, k, v)
    ref_out, ref_grads = kh.grads_of(_run("reference", mask), *kh.as_double(q, k, v))
    assert out.dtype == dtype and out.shape == (batch, heads, lq, dv)
    kh.close(out, ref_out, kh.tol[dtype])
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape
        kh.close(got, want, kh.tol[dtype])


def test_chunked_lse_and_its_gradient(kh):
    q, k, v, mask = kh.make_problem(1, batch=2, shared=True, heads=1, lq=6, lk=4, d=3, dv=2, dtype=torch.float64)
    out, lse = attention(q, k, v, key_padding_mask=mask, return_lse=True, backend="chunked", chunk_size=4)
    kh.close(out, attention(q, k, v, key_padding_mask=mask, backend="reference"), 1e-12)
    _, ref_lse = attention(q, k, v, key_padding_mask=mask, return_lse=True, backend="reference")
    kh.close(lse, ref_lse, 1e-12)
    # by hand: lse = log sum_j exp(q.k_j / sqrt(d)) over the real keys of batch item 1, head 0, query 0
    real = ~mask[1]
    by_hand = torch.log(torch.exp(k[1, 0, real] @ q[0, 0, 0] / 3**0.5).sum())
    assert torch.isclose(lse[1, 0, 0], by_hand)

    def f(q, k, v):
        return attention(q, k, v, key_padding_mask=mask, return_lse=True, backend="chunked", chunk_size=4)

    assert torch.autograd.gradcheck(f, (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lse_gradient_on_every_tile_engine(kh, dtype):
    q, k, v, mask = kh.make_problem(8, batch=3, shared=True, heads=2, lq=30, lk=11, d=16, dv=16, dtype=dtype)

    def loss(q, k, v, backend):
        out, lse = attention(q, k, v, key_padding_mask=mask, return_lse=True, backend=backend, chunk_size=8)
        return out.sum() + (lse * torch.linspace(-1, 1, lse.numel()).reshape(lse.shape)).sum()

    got = torch.autograd.grad(loss(q, k, v, "chunked"), [q, k, v])
    qd, kd, vd = kh.as_double(q, k, v)
    want = torch.autograd.grad(loss(qd, kd, vd, "reference"), [qd, kd, vd])
    for g, w in zip(got, want):
        kh.close(g, w, kh.tol[dtype])


def test_shared_queries_gradient_is_sum_over_batch(kh):
    q, k, v, _ = kh.make_problem(2, batch=3, shared=True, heads=2, lq=20, lk=6, d=8, dv=8, dtype=torch.float64,
                                 pad=False)
    out = attention(q, k, v, backend="chunked", chunk_size=8)
    (dq,) = torch.autograd.grad(out.sum(), [q])
    per_item = [torch.autograd.grad(attention(q, k[i:i + 1], v[i:i + 1], backend="reference").sum(), [q])[0]
                for i in range(3)]
    kh.close(dq, sum(per_item), 1e-12)


@pytest.mark.parametrize("backend", ["reference", "chunked", "sdpa"])
def test_padded_keys_are_ignored(kh, backend):
    q, k, v, _ = kh.make_problem(3, batch=2, shared=False, heads=1, lq=4, lk=6, d=4, dv=4, pad=False)
    mask = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    out = attention(q, k, v, key_padding_mask=mask, backend=backend)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[1, :, 4:] = 100.0
    v2[1, :, 4:] = -100.0
    kh.close(attention(q, k2, v2, key_padding_mask=mask, backend=backend), out, 1e-6)
    truncated = attention(q[1:], k[1:, :, :4], v[1:, :, :4], backend="reference")
    kh.close(out[1:], truncated, 1e-5)
    _, dk, dv = torch.autograd.grad(out.sum(), [q, k, v])
    assert dk[1, :, 4:].abs().max() == 0 and dv[1, :, 4:].abs().max() == 0


def test_auto_picks_by_request_and_shape():
    cpu = torch.device("cpu")
    plain = AttentionShape(batch=4, bq=4, heads=8, lq=4096, lk=257, d=64, dv=64)
    shared = AttentionShape(batch=4, bq=1, heads=8, lq=4096, lk=257, d=64, dv=64)
    huge = AttentionShape(batch=64, bq=64, heads=8, lq=300_000, lk=257, d=64, dv=64)
    assert pick_backend(plain, cpu) == "sdpa"
    assert pick_backend(plain, cpu, return_lse=True) == "chunked"
    assert pick_backend(plain, cpu, chunk_size=128) == "chunked"
    assert pick_backend(shared, cpu) == "chunked"
    assert pick_backend(huge, cpu) == "chunked"


def test_attention_probs_rows(kh):
    q, k, _, mask = kh.make_problem(4, batch=2, shared=True, heads=2, lq=50, lk=7, d=5, dv=5)
    rows = [0, 17, 49]
    probs = attention_probs(q, k, rows, key_padding_mask=mask)
    full = torch.softmax((q @ k.transpose(-1, -2) / 5**0.5).masked_fill(mask[:, None, None], float("-inf")), -1)
    kh.close(probs, full[:, :, rows], 1e-6)
    assert probs.shape == (2, 2, 3, 7)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 2, 3))
    assert probs.masked_select(mask[:, None, None, :].expand_as(probs)).abs().max() == 0
    kh.close(attention_probs(q, k, slice(10, 12)), attention_probs(q, k, [10, 11]), 0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda q, k, v, m: (q[0], k, v, m), "wrong number of dimensions"),
        (lambda q, k, v, m: (q[:, :1], k, v, m), "q do not match keys"),
        (lambda q, k, v, m: (q, k, v[:, :, :3], m), "v do not match keys"),
        (lambda q, k, v, m: (q, k.double(), v, m), "differ in dtype or device"),
        (lambda q, k, v, m: (q.int(), k, v, m), "not floating point"),
        (lambda q, k, v, m: (q, k, v, m.float()), "not a boolean tensor"),
        (lambda q, k, v, m: (q, k, v, m[:, :3]), "does not match the keys"),
        (lambda q, k, v, m: (q, k, v, torch.ones_like(m)), "every key of a batch item"),
    ],
)
def test_bad_input_messages(kh, change, message):
    q, k, v, mask = kh.make_problem(5, batch=2, shared=False, heads=2, lq=4, lk=5, d=4, dv=4)
    with pytest.raises(ConfigError, match=message) as err:
        q, k, v, mask = change(q.detach(), k.detach(), v.detach(), mask)
        attention(q, k, v, key_padding_mask=mask)
    assert "expected" in str(err.value)


def test_bad_options():
    q = torch.randn(1, 1, 4, 4)
    with pytest.raises(ConfigError, match="unknown attention backend"):
        attention(q, q, q, backend="flash")
    with pytest.raises(ConfigError, match="cannot return the log-sum-exp"):
        attention(q, q, q, backend="sdpa", return_lse=True)
    with pytest.raises(ConfigError, match="chunk_size must be a positive integer"):
        attention(q, q, q, chunk_size=0)
    with pytest.raises(ConfigError, match="not valid query indices"):
        attention_probs(q, q, rows=[4])
