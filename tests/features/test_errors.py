"""Bad model ids, missing weights and unknown layers give one quick error that says what to do."""

from __future__ import annotations

import time

import open_clip  # noqa: F401  (imported up front: the timing below is about lookups, not imports)
import pytest
import timm  # noqa: F401
import transformers  # noqa: F401

from braincode.errors import ConfigError, DataFormatError, ModelError
from braincode.features import get_extractor, parse_model_id


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Point every weight cache (hub, torch hub, ~/.cache/clip) at an empty folder."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("model_id", "how_to"),
    [
        (
            "open_clip:ViT-B-32@openai",
            "open_clip.create_model_and_transforms('ViT-B-32', pretrained='openai')",
        ),
        ("open_clip:ViT-B-16@laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"),
        ("open_clip_text:ViT-B-32@openai", "timm/vit_base_patch32_clip_224.openai"),
        ("timm:vit_tiny_patch16_224", "timm.create_model('vit_tiny_patch16_224', pretrained=True)"),
        ("timm:vit_tiny_patch16_224@augreg_in21k", "timm/vit_tiny_patch16_224.augreg_in21k"),
        ("hf:bert-base-uncased", "snapshot_download('bert-base-uncased')"),
    ],
)
def test_missing_pretrained_weights_fail_fast_with_how_to(empty_caches, model_id, how_to):
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        get_extractor(model_id, device="cpu")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "not in the local cache" in message and how_to in message
    assert str(empty_caches) in message and "HF_HOME" in message and "@random" in message


def test_unknown_source_lists_sources():
    with pytest.raises(ModelError, match="one of open_clip, open_clip_text, timm, hf"):
        get_extractor("keras:resnet50")


@pytest.mark.parametrize(
    ("model_id", "suggestion"),
    [("open_clip:ViT-B-33@openai", "ViT-B-32"), ("timm:vit_tiny_patch16_225@random", "vit_tiny_patch16_224")],
)
def test_unknown_model_name_suggests_close_names(model_id, suggestion):
    with pytest.raises(ModelError, match=f"has no model named.*{suggestion}"):
        get_extractor(model_id)


def test_weights_must_be_named_and_random_is_never_a_fallback():
    with pytest.raises(ModelError, match="needs its weights named.*openai.*random"):
        get_extractor("open_clip:ViT-B-32")
    with pytest.raises(ModelError, match="no pretrained weights 'nope'.*laion2b_s34b_b88k"):
        get_extractor("open_clip:ViT-B-16@nope")
    with pytest.raises(ModelError, match="expected .*random"):
        get_extractor("open_clip:tiny-vit")
    with pytest.raises(ModelError, match="timm has no pretrained weights 'vit_tiny_patch16_224.nope'"):
        get_extractor("timm:vit_tiny_patch16_224@nope")


def test_unknown_layer_lists_available(tiny_vit):
    with pytest.raises(ConfigError, match=r"no layer\(s\) \['blocks.4'\].*'blocks.3'"):
        get_extractor("open_clip:tiny-vit@random", layers=["pooled", "blocks.4"], device="cpu")
    with pytest.raises(ConfigError, match="hidden.6"):
        get_extractor("minilm", layers=["blocks.0"])
    assert get_extractor("minilm", layers="hidden.2").requested == ["hidden.2"]  # one name, not its letters


def test_bad_ids_devices_and_inputs(tiny_vit, minilm, tmp_path):
    with pytest.raises(ModelError, match="source:name"):
        parse_model_id("ViT-B-32")
    with pytest.raises(ConfigError, match='"auto", "cpu" or "cuda"'):
        get_extractor("minilm", device="tpu")
    with pytest.raises(ModelError, match="no model folder"):
        get_extractor(f"hf:{tmp_path}/missing/model")
    with pytest.raises(DataFormatError, match="image model and needs image files"):
        tiny_vit.extract(["a caption"])
    with pytest.raises(ConfigError, match="no stimuli"):
        minilm.extract([])
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        minilm.extract(["a"], batch_size=0)
