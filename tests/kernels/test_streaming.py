"""softmax_project and topk over keys streamed from tensors, arrays and memmaps, against full computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braincode.errors import ConfigError
from braincode.kernels import softmax_project, topk


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(1000, 16, generator=g, dtype=torch.float64)
    values = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    queries = torch.randn(37, 16, generator=g, dtype=torch.float64)
    return queries, keys, values


@pytest.fixture
def memmap_keys(tmp_path, data):
    _, keys, _ = data
    path = tmp_path / "keys.npy"
    np.save(path, keys.float().numpy())
    return np.load(path, mmap_mode="r")


def test_project_equals_full_softmax(kh, data):
    queries, keys, values = data
    out, lse = softmax_project(queries, keys, values, temperature=3.0, key_chunk=97, return_lse=True)
    scores = 3.0 * queries @ keys.T
    kh.close(out, torch.softmax(scores, dim=1) @ values, 1e-12)
    kh.close(lse, torch.logsumexp(scores, dim=1), 1e-12)


def test_project_normalize_is_cosine_softmax(kh, data):
    queries, keys, _ = data
    out = softmax_project(queries, keys, temperature=150.0, key_chunk=100, normalize=True)
    unit_q, unit_k = queries / queries.norm(dim=1, keepdim=True), keys / keys.norm(dim=1, keepdim=True)
    kh.close(out, torch.softmax(150.0 * unit_q @ unit_k.T, dim=1) @ keys, 1e-10)


def test_project_from_memmap_is_repeatable(kh, data, memmap_keys):
    queries, keys, values = data
    q32 = queries.float()
    first = softmax_project(q32, memmap_keys, values.numpy(), temperature=2.0, key_chunk=128)
    second = softmax_project(q32, memmap_keys, values.numpy(), temperature=2.0, key_chunk=300)
    kh.close(first, torch.softmax(2.0 * queries @ keys.T, dim=1) @ values, 1e-5)
    kh.close(second, first, 1e-5)
    assert np.array_equal(memmap_keys[:5], keys[:5].float().numpy())  # pages released, data intact


def test_topk_equals_full_topk(data, memmap_keys):
    queries, keys, _ = data
    scores, idx = topk(queries.float(), memmap_keys, k=10, key_chunk=64)
    want_scores, want_idx = (queries.float() @ keys.float().T).topk(10, dim=1)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(scores, want_scores)
    cos, cos_idx = topk(queries, keys, k=3, key_chunk=999, normalize=True)
    unit = keys / keys.norm(dim=1, keepdim=True)
    assert torch.equal(cos_idx, (queries @ unit.T).topk(3, dim=1).indices)
    assert cos.max() <= 1.0


def test_bad_streaming_input(data):
    queries, keys, values = data
    with pytest.raises(ConfigError, match="differ in feature dimension"):
        softmax_project(queries[:, :5], keys)
    with pytest.raises(ConfigError, match="values and keys differ in length"):
        softmax_project(queries, keys, values[:10])
    with pytest.raises(ConfigError, match="not a non-empty 2-D array"):
        softmax_project(queries, keys[0])
    with pytest.raises(ConfigError, match="key_chunk must be a positive integer"):
        softmax_project(queries, keys, key_chunk=0)
    with pytest.raises(ConfigError, match="topk k is out of range"):
        topk(queries, keys, k=1001)
    with pytest.raises(ConfigError, match="2-D floating-point torch tensor"):
        topk(queries.numpy(), keys, k=1)
