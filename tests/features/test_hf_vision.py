"""A transformers vision model from a local folder: blocks and pooled equal transformers' own outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTImageProcessor, ViTModel

from braincode.errors import ModelError
from braincode.features import get_extractor


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-hf-vit")
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_local_vit_matches_transformers(vit_folder, image_stimuli):
    ext = get_extractor(f"hf:{vit_folder}", layers=["pooled", "blocks.1"], device="cpu")
    assert (ext.kind, ext.num_prefix_tokens, ext.grid, ext.layers) == (
        "vision",
        1,
        (4, 4),
        ["pooled", "blocks.0", "blocks.1"],
    )
    feats = ext.extract(image_stimuli, batch_size=4)
    processor = ViTImageProcessor.from_pretrained(vit_folder)
    pixels = processor(
        images=[image_stimuli.image(i) for i in range(len(image_stimuli))], return_tensors="pt"
    )
    with torch.inference_mode():
        out = ViTModel.from_pretrained(vit_folder).eval()(**pixels, output_hidden_states=True)
    np.testing.assert_allclose(feats["blocks.1"], out.hidden_states[2].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(feats["pooled"], out.pooler_output.numpy(), atol=1e-5, rtol=0)


def test_folder_without_weights_is_explained(vit_folder, tmp_path):
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_bytes((vit_folder / name).read_bytes())
    with pytest.raises(ModelError, match="has no weights.*model.safetensors"):
        get_extractor(f"hf:{tmp_path}")
    random = get_extractor(f"hf:{tmp_path}@random", device="cpu")
    assert random.fingerprint.startswith("random-seed0:")
