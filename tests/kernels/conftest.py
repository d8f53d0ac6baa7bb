"""Shared helpers of the kernel tests: random attention problems and a relative closeness check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """max |actual - expected| <= rel * max |expected| (a relative error of the whole tensor)."""
    assert actual.shape == expected.shape
    err = (actual.double() - expected.double()).abs().max().item()
    bound = rel * expected.double().abs().max().item()
    assert err <= bound, f"max error {err:.3g} > {bound:.3g} (rel {rel})"


def make_problem(seed: int, *, batch: int, shared: bool, heads: int, lq: int, lk: int, d: int, dv: int,
                 dtype: torch.dtype = torch.float32, pad: bool = True):
    """Random q, k, v (leaf tensors requiring grad) and a key padding mask with ragged lengths (or None)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1 if shared else batch, heads, lq, d, generator=g).to(dtype).requires_grad_()
    k = torch.randn(batch, heads, lk, d, generator=g).to(dtype).requires_grad_()
    v = torch.randn(batch, heads, lk, dv, generator=g).to(dtype).requires_grad_()
    mask = None
    if pad:
        lengths = torch.randint(1, lk + 1, (batch,), generator=g)
        lengths[0] = lk
        mask = torch.arange(lk)[None, :] >= lengths[:, None]
    return q, k, v, mask


def grads_of(fn, q, k, v, seed: int = 7):
    """Output of ``fn(q, k, v)`` and the gradients of <output, G> for a fixed random G."""
    out = fn(q, k, v)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device, out.dtype)
    grads = torch.autograd.grad((out.float() * weight.float()).sum(), [q, k, v])
    return out, grads


def as_double(*tensors):
    """Detached float64 leaf copies requiring grad (the ground-truth inputs of ``reference``)."""
    return [t.detach().double().requires_grad_() for t in tensors]


@pytest.fixture
def kh() -> SimpleNamespace:
    """The helpers above, for test modules (conftest modules cannot be imported under importlib mode)."""
    return SimpleNamespace(
        close=assert_rel_close, make_problem=make_problem, grads_of=grads_of, as_double=as_double, tol=TOL
    )
