"""LaVCa: top images against a brute-force ranking, keyword extraction and filtering, sentence composition, the
local-model implementations on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braincode.errors import ConfigError, DataFormatError, ModelError
from braincode.interpret.bank import bank_from_arrays
from braincode.interpret.clipcap import PrefixDecoder
from braincode.interpret.lavca import components, describe, filter_keywords, top_images
from braincode.interpret.lavca_components import (
    BankCaptions,
    Composer,
    HFImageCaptioner,
    KeywordExtractor,
    LMComposer,
    LMKeywords,
    LocalLM,
    NounPhraseKeywords,
    TemplateComposer,
    WeightGuidedComposer,
    noun_phrases,
)

CAPTIONS = ["a large face on the left, on a grey background", "a small house at the top, on a red background",
            "the word \"ABC\" in the centre, on a grey background", "a person and a face, on a blue background",
            "a smooth grey texture with nothing on it"]


def _bank(n: int = 400, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, dim)) * rng.uniform(0.5, 2.0, (n, 1))
    return bank_from_arrays([f"i{i}" for i in range(n)], raw, captions=[CAPTIONS[i % 5] for i in range(n)]), raw


def test_top_images_match_the_ranking_of_predicted_activation():
    bank, raw = _bank()
    w = np.random.default_rng(1).standard_normal((6, raw.shape[1]))
    predicted = (raw / np.linalg.norm(raw, axis=1, keepdims=True)) @ w.T + 3.0  # the encoder's prediction
    expected = np.argsort(-predicted, axis=0)[:10].T
    np.testing.assert_array_equal(top_images(w, bank, 10, key_chunk=64, device="cpu"), expected)


def test_noun_phrases_and_keywords():
    assert noun_phrases('the word "ABC" in the centre, on a grey background') == ["word", "centre", "grey background"]
    ranked = NounPhraseKeywords().keywords(CAPTIONS[:4])
    assert ranked[:2] == ["background", "face"]  # by number of captions; positions left out
    assert "left" not in ranked and "top" not in ranked
    # against the bank as reference, the word every image has drops behind the distinctive one
    contrast = NounPhraseKeywords(reference=CAPTIONS * 10).keywords([CAPTIONS[0], CAPTIONS[3]])
    assert contrast[0] == "face"
    assert isinstance(NounPhraseKeywords(), KeywordExtractor)


def test_filter_keeps_keywords_closest_to_the_weight_direction():
    space = {"face": [1.0, 0.0, 0.0], "house": [0.0, 1.0, 0.0], "word": [0.0, 0.0, 1.0], "person": [0.7, 0.0, 0.7]}
    encode = lambda words: np.array([space[w] for w in words])
    kept = filter_keywords([["house", "word", "face", "person"]] * 2, np.array([[2.0, 0, 0.1], [0, 0, 1.0]]),
                           encode, 2)
    assert kept == [["face", "person"], ["word", "person"]]
    assert filter_keywords([["b", "a", "c"]], np.ones((1, 3)), None, 2) == [["b", "a"]]
    with pytest.raises(DataFormatError, match="does not embed into the weights' space"):
        filter_keywords([["face"]], np.ones((1, 5)), encode, 1)


def test_template_composer():
    assert TemplateComposer().compose(["face", "ear"]) == "a photo of a face and an ear"
    assert TemplateComposer("{}.").compose([]) == "something."
    assert isinstance(TemplateComposer(), Composer)


def test_describe_finds_the_captions_of_the_preferred_images():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 16))
    labels = np.arange(200) % 5
    raw = centres[labels] + 0.3 * rng.standard_normal((200, 16))
    bank = bank_from_arrays([f"i{i}" for i in range(200)], raw, captions=[CAPTIONS[k] for k in labels])
    table = describe(centres[[0, 1]], bank, n_top=20, n_keywords=1, device="cpu")
    assert table["caption"].tolist() == ["a photo of a face", "a photo of a house"]
    assert all(len(t.split(";")) == 20 for t in table["top_images"])
    assert all(int(i[1:]) % 5 == 0 for i in table["top_images"][0].split(";"))


def test_components_record_what_made_each_output(tmp_path):
    bank, raw = _bank(n=30)
    simplified = describe(np.ones((2, raw.shape[1])), bank, n_top=5)
    assert (simplified["mode"] == "simplified").all()
    assert simplified.attrs["components"]["composer"].startswith("template")
    with pytest.raises(ConfigError, match="LaVCa as published needs.*--simplified"):
        components(bank)


def test_describe_bad_input():
    bank, raw = _bank(n=10)
    with pytest.raises(ConfigError, match=r"n_top is out of range.*1 <= n_top <= 10"):
        describe(np.ones((1, raw.shape[1])), bank, n_top=11)
    with pytest.raises(DataFormatError, match="do not live in the bank's embedding space"):
        describe(np.ones((1, 3)), bank)
    with pytest.raises(DataFormatError, match="the bank has no captions.*HFImageCaptioner"):
        BankCaptions().caption(bank_from_arrays(["a"], np.ones((1, 2))), [0])
    with pytest.raises(ModelError, match="not a transformers model folder"):
        LocalLM("/nonexistent")


def test_local_lm_keywords_and_composer(tmp_path):
    """A tiny random causal LM saved locally runs through the LM-based extractor and composer."""
    words = ["face", "house", "person", ",", "photo", "a", "of", "sentence", "keywords", "image"]
    lm_folder = tmp_path / "lm"
    PrefixDecoder.tiny(4, [" ".join(words)], n_layer=1, n_embd=16, random_state=0).lm.save_pretrained(lm_folder)
    PrefixDecoder.tiny(4, [" ".join(words)]).tokenizer.save_pretrained(lm_folder)
    lm = LocalLM(lm_folder, max_new_tokens=6, device="cpu")
    answer = lm.generate("a photo of a face")
    assert answer == lm.generate("a photo of a face")  # greedy: deterministic
    keywords = LMKeywords(lm).keywords(["a face", "a house"])
    assert all(k and k == k.lower() and "," not in k for k in keywords)
    sentence = LMComposer(lm).compose(["face", "house"])
    assert isinstance(sentence, str) and "\n" not in sentence
    assert LMKeywords(lm, max_captions=40).keywords(["a face of a person"] * 40) is not None  # prompt > context: cut
    # the published composer: of the LM's 3 beam candidates, the one nearest the voxel weight
    candidates = lm.generate(LMComposer.prompt.format(keywords="face, house"), n=3)
    assert len(candidates) == 3
    encode = lambda texts: np.array([[float(len(t)), 1.0] for t in texts])
    chosen = WeightGuidedComposer(lm, encode, n_candidates=3).compose(["face", "house"], np.array([1.0, 0.0]))
    firsts = [(c.splitlines() or [""])[0].strip() for c in candidates]
    unit = encode(firsts) / np.linalg.norm(encode(firsts), axis=1, keepdims=True)
    assert chosen == firsts[int(np.argmax(unit[:, 0]))]


def test_image_captioner_on_a_tiny_vision_encoder_decoder(tmp_path):
    """A local image-to-text model (random tiny ViT + GPT-2, VisionEncoderDecoder) captions bank images; batched
    captions equal one-by-one captions, and repeated images are captioned once."""
    from PIL import Image
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tok = PrefixDecoder.tiny(4, ["a face and a house on a grey background"]).tokenizer
    decoder = GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=1, n_head=2, add_cross_attention=True,
                         is_decoder=True, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    encoder = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    torch.manual_seed(0)
    VisionEncoderDecoderModel(config=config).save_pretrained(tmp_path / "captioner")
    tok.save_pretrained(tmp_path / "captioner")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "captioner")
    paths = []
    for i, pixels in enumerate(np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    bank = bank_from_arrays([p.name for p in paths], np.eye(5), paths=paths)
    batched = HFImageCaptioner(tmp_path / "captioner", max_new_tokens=5, batch_size=4, device="cpu")
    captions = batched.caption(bank, [4, 0, 1, 2, 3, 0])
    assert captions[1] == captions[5] and len(batched._cache) == 5
    single = HFImageCaptioner(tmp_path / "captioner", max_new_tokens=5, batch_size=1, device="cpu")
    assert [single.caption(bank, [i])[0] for i in (4, 0, 1, 2, 3, 0)] == captions
    assert set(" ".join(captions).split()) <= set(tok.get_vocab())  # decoded words of the model's vocabulary
    with pytest.raises(ModelError, match="not a transformers image-to-text model folder"):
        HFImageCaptioner(tmp_path)
