"""pool_tokens against manual averages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from braincode.errors import ConfigError, DataFormatError
from braincode.features import pool_tokens


@pytest.fixture
def tokens():
    rng = np.random.default_rng(1)
    return rng.standard_normal((3, 2 + 7 * 5, 4)).astype(np.float32)  # 2 prefix tokens, 7x5 grid


def test_grid_pooling_matches_manual_bin_averages(tokens):
    out = pool_tokens(tokens, num_prefix_tokens=2, grid=(7, 5), mode="grid", out_grid=3)
    assert out.shape == (3, 3 * 3 * 4) and out.dtype == np.float32
    patches = tokens[:, 2:].reshape(3, 7, 5, 4)
    cells = out.reshape(3, 3, 3, 4)
    for i in range(3):
        rows = slice(math.floor(i * 7 / 3), math.ceil((i + 1) * 7 / 3))  # adaptive pooling bins
        for j in range(3):
            cols = slice(math.floor(j * 5 / 3), math.ceil((j + 1) * 5 / 3))
            np.testing.assert_allclose(cells[:, i, j], patches[:, rows, cols].mean(axis=(1, 2)), atol=1e-6)


def test_mean_and_cls(tokens):
    np.testing.assert_allclose(
        pool_tokens(tokens, num_prefix_tokens=2, grid=(7, 5), mode="mean"), tokens[:, 2:].mean(1), atol=1e-6
    )
    np.testing.assert_array_equal(
        pool_tokens(tokens, num_prefix_tokens=2, grid=(7, 5), mode="cls"), tokens[:, 0]
    )


def test_full_grid_is_the_patch_tokens(tokens):
    out = pool_tokens(tokens, num_prefix_tokens=2, grid=(7, 5), mode="grid", out_grid=5)
    assert out.shape == (3, 100)
    with pytest.raises(ConfigError, match="out_grid between 1 and 5"):
        pool_tokens(tokens, num_prefix_tokens=2, grid=(7, 5), mode="grid", out_grid=6)


def test_bad_inputs_are_explained(tokens):
    with pytest.raises(DataFormatError, match=r"T = 1 \+ 7\*5 = 36"):
        pool_tokens(tokens, num_prefix_tokens=1, grid=(7, 5))
    with pytest.raises(DataFormatError, match=r"shape \(n, T, D\)"):
        pool_tokens(tokens[0], num_prefix_tokens=2, grid=(7, 5))
    with pytest.raises(ConfigError, match="mean or cls or grid"):
        pool_tokens(tokens, num_prefix_tokens=2, grid=(7, 5), mode="max")
    with pytest.raises(ConfigError, match="needs a class token"):
        pool_tokens(tokens[:, 2:], num_prefix_tokens=0, grid=(7, 5), mode="cls")
