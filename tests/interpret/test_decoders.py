"""Caption decoders: retrieval against brute force, the ClipCap prefix decoder trains, decodes and round-trips."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from braincode.commands import train_decoder
from braincode.errors import DataFormatError, MissingFileError, ModelError
from braincode.interpret.bank import bank_from_arrays
from braincode.interpret.decoders import CaptionDecoder, PrefixDecoder, RetrievalDecoder, word_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CAPTIONS = ["a large face on the left", "a small house at the top", "the word on a grey background",
            "a person in the centre"]


def _pairs(n_per: int = 6, dim: int = 16, seed: int = 0):
    """Embeddings clustered around one random direction per caption."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(CAPTIONS), dim))
    labels = np.tile(np.arange(len(CAPTIONS)), n_per)
    emb = centres[labels] + 0.05 * rng.standard_normal((len(labels), dim))
    return emb.astype(np.float32), [CAPTIONS[i] for i in labels], centres.astype(np.float32)


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


def test_word_tokenizer_round_trip():
    tok = word_tokenizer(CAPTIONS)
    for caption in CAPTIONS:
        assert tok.decode(tok(caption)["input_ids"]) == caption
    assert tok.convert_ids_to_tokens(tok("a zebra")["input_ids"]) == ["a", "<unk>"]


def test_prefix_decoder_trains_and_beam_decodes(tmp_path):
    emb, captions, centres = _pairs()
    dec = PrefixDecoder.tiny(emb.shape[1], captions, prefix_length=4, n_layer=2, n_embd=32, random_state=0)
    assert dec.config.hidden == 4 * 32 // 2  # ClipCap's MLP width: prefix_length * n_embd / 2
    losses = dec.fit(emb, captions, epochs=40, batch_size=8, lr=3e-3, random_state=0, device="cpu")
    assert losses[-1] < 0.2 * losses[0]
    # unseen embeddings near each centre decode to that centre's caption with 5 beams
    assert dec.decode(centres, num_beams=5) == CAPTIONS
    # saved and loaded (safetensors + JSON + tokenizer), it decodes the same
    folder = dec.save(tmp_path / "decoder")
    again = PrefixDecoder.load(folder, device="cpu")
    assert again.decode(centres, num_beams=5) == CAPTIONS
    assert not list(tmp_path.glob(".decoder*")), "temporary folder left behind"


def test_prefix_decoder_is_seeded():
    emb, captions, _ = _pairs(n_per=2)
    runs = []
    for _ in range(2):
        dec = PrefixDecoder.tiny(emb.shape[1], captions, prefix_length=2, n_embd=16, random_state=3)
        runs.append(dec.fit(emb, captions, epochs=2, batch_size=4, lr=1e-3, random_state=3, device="cpu"))
    assert runs[0] == runs[1]


def test_prefix_decoder_bad_input(tmp_path):
    emb, captions, _ = _pairs(n_per=1)
    dec = PrefixDecoder.tiny(emb.shape[1], captions, prefix_length=2, n_embd=16)
    with pytest.raises(DataFormatError, match="one caption per embedding"):
        dec.fit(emb, captions[:2], epochs=1)
    with pytest.raises(DataFormatError, match=r"expected \(n, 16\)"):
        dec.decode(np.zeros((1, 3), np.float32))
    with pytest.raises(MissingFileError, match="not a prefix-decoder folder.*train-decoder"):
        PrefixDecoder.load(tmp_path)
    with pytest.raises(ModelError, match="not a GPT-2 model folder"):
        PrefixDecoder.from_gpt2(tmp_path, 16)


def test_train_decoder_command_and_a_local_gpt2(tmp_path):
    """`braincode train-decoder` trains on a captioned bank; a GPT-2 folder on disk can be the language model."""
    emb, captions, centres = _pairs()
    bank_from_arrays([f"i{i}" for i in range(len(captions))], emb, captions=captions).save(tmp_path / "bank")
    parser = argparse.ArgumentParser(prog="braincode")
    train_decoder.register(parser.add_subparsers(dest="command", required=True))
    base = ["train-decoder", "--bank", str(tmp_path / "bank"), "--prefix-length", "4", "--n-embd", "32",
            "--epochs", "40", "--batch-size", "8", "--lr", "3e-3", "--device", "cpu"]
    args = parser.parse_args([*base, "--out", str(tmp_path / "decoder")])
    assert args.func(args) == 0
    trained = PrefixDecoder.load(tmp_path / "decoder", device="cpu")
    assert trained.decode(centres) == CAPTIONS
    # the trained language model, saved as a plain GPT-2 folder, loads through --gpt2 with a fresh prefix MLP
    args = parser.parse_args([*base, "--epochs", "1", "--gpt2", str(tmp_path / "decoder" / "lm"),
                              "--out", str(tmp_path / "again")])
    assert args.func(args) == 0
    again = PrefixDecoder.load(tmp_path / "again", device="cpu")
    assert again.lm.config.n_embd == 32 and len(again.tokenizer) == len(trained.tokenizer)
    assert not torch.equal(again.mlp[0].weight, trained.mlp[0].weight)
    bank_from_arrays(["a"], np.ones((1, 16))).save(tmp_path / "nocap")
    args = parser.parse_args(["train-decoder", "--bank", str(tmp_path / "nocap"), "--out", str(tmp_path / "x")])
    with pytest.raises(DataFormatError, match="no captions to train on.*captions.csv"):
        args.func(args)
    assert not (tmp_path / "x").exists()
