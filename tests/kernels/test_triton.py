"""The Triton kernels against ``reference`` under the Triton interpreter (CPU, tiny shapes).

Triton picks the interpreter when ``triton`` itself is imported (its standard library is made of jit functions)
and when a kernel is decorated, so TRITON_INTERPRET=1 must be set before the first ``import triton`` of the
process (and it stays set: launches read it too). If this module is the first to import triton, it sets it; if another test
module imported triton earlier (timm and open_clip do), the cases here are skipped and
``test_triton_cases_in_fresh_process`` runs this file again in a subprocess with TRITON_INTERPRET=1.
bfloat16 is checked only on CUDA: the interpreter stores bfloat16 as raw 16-bit integers and cannot compute with it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from braincode.errors import ConfigError
from braincode.kernels import attention

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)
if not torch.cuda.is_available() and "triton" not in sys.modules and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"  # stays set: triton also reads it when kernels launch
    importlib.import_module("braincode.kernels.triton._kernels")

from braincode.kernels.triton import _autograd, triton_attention

USABLE = torch.cuda.is_available() or _autograd.interpreted()
needs_kernels = pytest.mark.skipif(not USABLE, reason="triton was imported before the interpreter could be enabled")
SMALL = {"block_m": 16, "block_n": 16}
CASES = [  # batch, shared, heads, lq, lk, d, dv
    (2, True, 2, 40, 19, 40, 40),
    (2, False, 1, 33, 37, 24, 17),
    (3, True, 1, 17, 5, 80, 80),
]


@pytest.mark.skipif(USABLE, reason="the cases ran in this process")
def test_triton_cases_in_fresh_process():
    env = {**os.environ, "TRITON_INTERPRET": "1", "BRAINCODE_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
           "-o", "addopts=--import-mode=importlib"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def _problem(kh, case, dtype):
    batch, shared, heads, lq, lk, d, dv = case
    q, k, v, mask = kh.make_problem(sum(case), batch=batch, shared=shared, heads=heads, lq=lq, lk=lk, d=d, dv=dv,
                                    dtype=dtype)
    return [t.detach().to(_device()).requires_grad_() for t in (q, k, v)] + [mask.to(_device())]


DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if torch.cuda.is_available() else [])


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_triton_matches_reference(kh, case, dtype):
    q, k, v, mask = _problem(kh, case, dtype)
    out, grads = kh.grads_of(lambda q, k, v: triton_attention(q, k, v, key_padding_mask=mask, **SMALL), q, k, v)
    ref, ref_grads = kh.grads_of(lambda q, k, v: attention(q, k, v, key_padding_mask=mask, backend="reference"),
                                 *kh.as_double(q, k, v))
    assert out.dtype == dtype
    kh.close(out, ref, kh.tol[dtype])
    for got, want in zip(grads, ref_grads):
        assert got.dtype == dtype and got.shape == want.shape
        kh.close(got, want, kh.tol[dtype])
@needs_kernels
def test_triton_lse_gradient_and_splits(kh):
    q, k, v, mask = _problem(kh, CASES[1], torch.float32)
    g = torch.Generator().manual_seed(3)

    def loss(fn, **kw):
        out, lse = fn(q, k, v, key_padding_mask=mask, return_lse=True, **kw)
        weights = torch.randn(out.shape, generator=g), torch.randn(lse.shape, generator=g)
        value = (out * weights[0].to(out.device)).sum() + (lse * weights[1].to(lse.device)).sum()
        return lse, torch.autograd.grad(value, [q, k, v])

    g.manual_seed(3)
    lse, grads = loss(triton_attention, splits=1, **SMALL)
    g.manual_seed(3)
    ref_lse, ref_grads = loss(attention, backend="reference")
    g.manual_seed(3)
    _, split_grads = loss(triton_attention, splits=3, **SMALL)
    kh.close(lse, ref_lse, 1e-5)
    for got, split, want in zip(grads, split_grads, ref_grads):
        kh.close(got, want, 1e-5)
        kh.close(split, want, 1e-5)


@needs_kernels
@pytest.mark.parametrize("case", CASES[:2])
def test_fused_readout_epilogue(kh, case):
    q, k, v, mask = _problem(kh, case, torch.float32)
    batch, _, heads, lq, _, _, dv = case
    w = torch.randn(lq, heads * dv, generator=torch.Generator().manual_seed(5)).to(_device()).requires_grad_()

    def fused(q, k, v):
        return triton_attention(q, k, v, key_padding_mask=mask, readout_weight=w, **SMALL)

    def unfused(q, k, v):
        out = attention(q, k, v, key_padding_mask=mask, backend="reference")
        return (out.transpose(1, 2).reshape(batch, lq, heads * dv) * w).sum(-1)

    out = fused(q, k, v)
    assert out.shape == (batch, lq)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(6)).to(out.device)
    got = torch.autograd.grad((fused(q, k, v) * weight).sum(), [q, k, v, w])
    want = torch.autograd.grad((unfused(q, k, v) * weight).sum(), [q, k, v, w])
    kh.close(out, unfused(q, k, v), 1e-5)
    for g_, w_ in zip(got, want):
        kh.close(g_, w_, 1e-5)
@needs_kernels
def test_attention_dispatches_to_triton(kh):
    q, k, v, mask = _problem(kh, CASES[0], torch.float32)
    out = attention(q, k, v, key_padding_mask=mask, backend="triton")
    kh.close(out, attention(q, k, v, key_padding_mask=mask, backend="reference"), 1e-5)
@needs_kernels
def test_triton_bad_input(kh, monkeypatch):
    q, k, v, _ = _problem(kh, CASES[0], torch.float32)
    with pytest.raises(ConfigError, match="float16, bfloat16 and float32 only"):
        triton_attention(q.double(), k.double(), v.double())
    with pytest.raises(ConfigError, match="block_m must be a power of two"):
        triton_attention(q, k, v, block_m=24)
    with pytest.raises(ConfigError, match="readout_weight does not match"):
        triton_attention(q, k, v, readout_weight=torch.zeros(3, 3, device=q.device))
    if not torch.cuda.is_available():
        monkeypatch.setattr(_autograd, "interpreted", lambda: False)
        with pytest.raises(ConfigError, match="needs CUDA tensors"):
            triton_attention(q, k, v)
