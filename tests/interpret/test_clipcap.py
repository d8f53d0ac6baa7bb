"""ClipCap parity with the authors' code (tests/fixtures/clipcap, see its README), persistence and training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from braincode.commands import train_decoder
from braincode.errors import ConfigError, DataFormatError, MissingFileError, ModelError
from braincode.interpret.bank import bank_from_arrays
from braincode.interpret.clipcap import PrefixDecoder, word_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURE = Path(__file__).parents[1] / "fixtures" / "clipcap"


@pytest.fixture(scope="module")
def reference():
    config = json.loads((FIXTURE / "fixture_config.json").read_text())
    state = torch.load(FIXTURE / "clipcap_state_dict.pt", map_location="cpu", weights_only=True)
    gpt2 = json.loads((FIXTURE / "gpt2_config.json").read_text())
    decoder = PrefixDecoder.from_clipcap(state, gpt2)
    return decoder, config, load_file(str(FIXTURE / "inputs.safetensors")), load_file(str(FIXTURE / "outputs.safetensors"))


def _unpad(ids: torch.Tensor, lengths: torch.Tensor) -> list:
    return [row[: int(n)].tolist() for row, n in zip(ids, lengths)]


def test_prefix_embeddings_and_logits_match_the_original(reference):
    decoder, config, inputs, outputs = reference
    assert decoder.config.prefix_length == config["prefix_length"] and decoder.config.hidden == 160
    with torch.no_grad():
        torch.testing.assert_close(decoder.prefix_embeddings(inputs["prefix"]), outputs["prefix_embed"],
                                   atol=1e-5, rtol=1e-5)
        logits = decoder.logits(inputs["prefix"], inputs["tokens"])
    assert logits.shape == (4, 16, 1000)
    torch.testing.assert_close(logits, outputs["logits"], atol=1e-5, rtol=1e-5)


def test_greedy_and_beam_ids_match_the_original_exactly(reference):
    decoder, config, inputs, outputs = reference
    stop = config["stop_token_id"]
    greedy = decoder.generate(inputs["prefix"], method="greedy", max_tokens=20, stop_token_id=stop)
    assert greedy == _unpad(outputs["greedy_ids"], outputs["greedy_len"])
    beams = decoder.generate(inputs["prefix"], method="beam", beam_size=5, max_tokens=20, stop_token_id=stop)
    assert beams == [_unpad(ids, n) for ids, n in zip(outputs["beam_ids"], outputs["beam_len"])]
    # decoded together (rows stopping at different steps are frozen), the ids are the same
    for batch in (2, 4):
        assert decoder.generate(inputs["prefix"], method="greedy", max_tokens=20, stop_token_id=stop,
                                batch_size=batch) == greedy
        assert decoder.generate(inputs["prefix"], beam_size=5, max_tokens=20, stop_token_id=stop,
                                batch_size=batch) == beams


def test_checkpoint_file_loads_weights_only_and_round_trips(reference, tmp_path):
    _, config, inputs, outputs = reference
    again = PrefixDecoder.from_clipcap(FIXTURE / "clipcap_state_dict.pt", FIXTURE / "gpt2_config.json")
    saved = PrefixDecoder.load(again.save(tmp_path / "decoder"), device="cpu")
    beams = saved.generate(inputs["prefix"], beam_size=5, max_tokens=20, stop_token_id=config["stop_token_id"])
    assert beams == [_unpad(ids, n) for ids, n in zip(outputs["beam_ids"], outputs["beam_len"])]
    # old checkpoints carry causal-mask buffers: ignored
    state = torch.load(FIXTURE / "clipcap_state_dict.pt", map_location="cpu", weights_only=True)
    state["gpt.transformer.h.0.attn.bias"] = torch.ones(1, 1, 128, 128)
    PrefixDecoder.from_clipcap(state, FIXTURE / "gpt2_config.json")


def test_clipcap_bad_input(reference):
    decoder, *_ = reference
    gpt2 = FIXTURE / "gpt2_config.json"
    with pytest.raises(ModelError, match="not a ClipCap MLP checkpoint.*transformer mapper"):
        PrefixDecoder.from_clipcap({"clip_project.linear.weight": torch.zeros(1)}, gpt2)
    state = torch.load(FIXTURE / "clipcap_state_dict.pt", map_location="cpu", weights_only=True)
    with pytest.raises(ModelError, match="does not fit the GPT-2 width"):
        PrefixDecoder.from_clipcap(state, {**json.loads(gpt2.read_text()), "n_embd": 48, "n_head": 2})
    with pytest.raises(ConfigError, match="no tokenizer"):
        decoder.generate(np.zeros((1, 512), np.float32))
    with pytest.raises(ConfigError, match="greedy.*beam"):
        decoder.generate(np.zeros((1, 512), np.float32), method="sample", stop_token_id=1)
    with pytest.raises(DataFormatError, match=r"expected \(n, 512\)"):
        decoder.generate(np.zeros((1, 3), np.float32), stop_token_id=1)


CAPTIONS = ["a large face on the left", "a small house at the top", "the word on a grey background",
            "a person in the centre"]


def _pairs(n_per: int = 6, dim: int = 16, seed: int = 0):
    """Embeddings clustered around one random direction per caption."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(CAPTIONS), dim))
    labels = np.tile(np.arange(len(CAPTIONS)), n_per)
    emb = centres[labels] + 0.05 * rng.standard_normal((len(labels), dim))
    return emb.astype(np.float32), [CAPTIONS[i] for i in labels], centres.astype(np.float32)


def test_word_tokenizer_round_trip():
    tok = word_tokenizer(CAPTIONS)
    for caption in CAPTIONS:
        assert tok.decode(tok(caption)["input_ids"]) == caption
    assert tok.convert_ids_to_tokens(tok("a zebra")["input_ids"]) == ["a", "<unk>"]


def test_prefix_decoder_trains_decodes_and_round_trips(tmp_path):
    emb, captions, centres = _pairs()
    dec = PrefixDecoder.tiny(emb.shape[1], captions, prefix_length=4, n_layer=2, n_embd=32, random_state=0)
    assert dec.config.hidden == 4 * 32 // 2  # ClipCap's MLP width: prefix_length * n_embd / 2
    losses = dec.fit(emb, captions, epochs=40, batch_size=8, lr=3e-3, random_state=0, device="cpu",
                     progress_bar=False)
    assert losses[-1] < 0.2 * losses[0]
    assert dec.decode(centres) == CAPTIONS  # unseen embeddings near each centre, 5 beams
    again = PrefixDecoder.load(dec.save(tmp_path / "decoder"), device="cpu")
    assert again.decode(centres) == CAPTIONS
    assert sorted(p.name for p in (tmp_path / "decoder").iterdir()) == ["config.json", "model.safetensors"]


def test_prefix_decoder_is_seeded():
    emb, captions, _ = _pairs(n_per=2)
    runs = []
    for _ in range(2):
        dec = PrefixDecoder.tiny(emb.shape[1], captions, prefix_length=2, n_embd=16, random_state=3)
        runs.append(dec.fit(emb, captions, epochs=2, batch_size=4, lr=1e-3, random_state=3, device="cpu",
                            progress_bar=False))
    assert runs[0] == runs[1]


def test_prefix_decoder_bad_input(tmp_path):
    emb, captions, _ = _pairs(n_per=1)
    dec = PrefixDecoder.tiny(emb.shape[1], captions, prefix_length=2, n_embd=16)
    with pytest.raises(DataFormatError, match="one caption per embedding"):
        dec.fit(emb, captions[:2], epochs=1)
    with pytest.raises(MissingFileError, match="incomplete"):
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
    trained.lm.save_pretrained(tmp_path / "gpt2")
    trained.tokenizer.save_pretrained(tmp_path / "gpt2")
    args = parser.parse_args([*base, "--epochs", "1", "--gpt2", str(tmp_path / "gpt2"), "--out", str(tmp_path / "b")])
    assert args.func(args) == 0
    again = PrefixDecoder.load(tmp_path / "b", device="cpu")
    assert again.lm.config.n_embd == 32 and len(again.tokenizer) == len(trained.tokenizer)
    assert not torch.equal(again.mlp[0].weight, trained.mlp[0].weight)
    bank_from_arrays(["a"], np.ones((1, 16))).save(tmp_path / "nocap")
    args = parser.parse_args(["train-decoder", "--bank", str(tmp_path / "nocap"), "--out", str(tmp_path / "x")])
    with pytest.raises(DataFormatError, match="no captions to train on.*captions.csv"):
        args.func(args)
    assert not (tmp_path / "x").exists()
