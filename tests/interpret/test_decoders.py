"""The retrieval baseline decoder against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from braincode.errors import DataFormatError
from braincode.interpret.bank import bank_from_arrays
from braincode.interpret.decoders import CaptionDecoder, RetrievalDecoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_retrieval_matches_brute_force_cosine():
    rng = np.random.default_rng(1)
    keys = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((40, 8)).astype(np.float32) * 3.0
    captions = [f"caption {i}" for i in range(len(keys))]
    dec = RetrievalDecoder(captions, keys, key_chunk=64)
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    expected = np.argsort(-(queries @ unit.T), axis=1)[:, :3]
    np.testing.assert_array_equal(dec.nearest(queries, 3), expected)
    assert dec.decode(queries) == [captions[i] for i in expected[:, 0]]
    assert isinstance(dec, CaptionDecoder)


def test_retrieval_from_bank_uses_text_keys_when_given():
    bank = bank_from_arrays(["a", "b", "c"], np.eye(3), captions=["a face", "", "a house"])
    dec = RetrievalDecoder.from_bank(bank)
    assert dec.captions == ["a face", "a house"]  # entries without caption are left out
    flipped = RetrievalDecoder.from_bank(bank, encode_text=lambda t: np.array([[0, 0, 1.0], [1.0, 0, 0]]))
    assert flipped.decode(np.array([[1.0, 0, 0]])) == ["a house"]


def test_retrieval_bad_input():
    with pytest.raises(DataFormatError, match="one key per caption"):
        RetrievalDecoder(["a", "b"], np.zeros((3, 4)))
    dec = RetrievalDecoder(["a"], np.ones((1, 4)))
    with pytest.raises(DataFormatError, match=r"expected \(n, 4\)"):
        dec.decode(np.ones((2, 5)))
    with pytest.raises(DataFormatError, match="no captions"):
        RetrievalDecoder.from_bank(bank_from_arrays(["a"], np.ones((1, 2))))
