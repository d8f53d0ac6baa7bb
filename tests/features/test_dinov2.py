"""DINOv2 as the transformer brain encoder feeds it: images zero-padded to a multiple of 14, and the "q" facet of
a block (its attention query projection) as a layer, checked against transformers' and timm's own modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

from braincode.data.core import Stimuli
from braincode.features import get_extractor
from braincode.features.vision import DINOV2_IMAGE_SIZE, PatchPad, load_images

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def dinov2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-dinov2")
    config = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(image_mean=list(MEAN), image_std=list(STD)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def nsd_sized(tmp_path_factory):
    """Two images at NSD's 425 px (fed unresized, as the authors do) and one of another size."""
    folder = tmp_path_factory.mktemp("nsd-images")
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(425, 425, 3), (425, 425, 3), (300, 200, 3)]):
        paths.append(folder / f"im{i}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    return Stimuli(ids=[p.stem for p in paths], paths=paths)


def test_images_are_zero_padded_as_the_authors_do(nsd_sized):
    pad = PatchPad(14, MEAN, STD)
    image = nsd_sized.image(0)
    x = pad(image)
    authors = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])(image)  # their transform_val, then zeros appended
    padded = torch.zeros(3, 434, 434)
    padded[:, :425, :425] = authors
    assert DINOV2_IMAGE_SIZE == 425 and pad.grid == (31, 31)
    torch.testing.assert_close(x, padded, rtol=1e-6, atol=1e-6)
    assert pad(nsd_sized.image(2)).shape == (3, 434, 434)  # other sizes are resized first: one grid for all


def test_hf_dinov2_q_facet_is_the_query_projection(dinov2_folder, nsd_sized):
    ext = get_extractor(f"hf:{dinov2_folder}", layers=["blocks.1.q", "blocks.1"], device="cpu")
    assert ext.grid == (31, 31) and ext.num_prefix_tokens == 1
    assert ext.layers == ["pooled", "blocks.0", "blocks.1", "blocks.0.q", "blocks.1.q"]
    feats = ext.extract(nsd_sized, batch_size=2, progress=False)
    assert feats["blocks.1.q"].shape == (3, 1 + 31 * 31, 32)
    x = load_images(nsd_sized, range(3), PatchPad(14, MEAN, STD))
    model = Dinov2Model.from_pretrained(dinov2_folder).eval()
    with torch.no_grad():
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states  # hidden[i]: input of layer i
        layer = model.encoder.layer[1]
        q = layer.attention.q_proj(layer.norm1(hidden[1]))
    np.testing.assert_allclose(feats["blocks.1.q"], q.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["blocks.1"], hidden[2].numpy(), rtol=1e-5, atol=1e-5)


def test_timm_dinov2_q_facet_is_the_first_third_of_qkv(nsd_sized):
    ext = get_extractor("timm:vit_small_patch14_dinov2@random", layers=["blocks.11.q", "blocks.10"], device="cpu")
    assert ext.grid == (31, 31) and ext.num_prefix_tokens == 1 and "PatchPad" in ext.preprocess
    two = nsd_sized.subset([0, 1])
    feats = ext.extract(two, batch_size=2, progress=False)
    block = ext.model.blocks[11]
    with torch.no_grad():
        qkv = block.attn.qkv(block.norm1(torch.from_numpy(feats["blocks.10"])))
    assert feats["blocks.11.q"].shape == (2, 962, 384)
    np.testing.assert_allclose(feats["blocks.11.q"], qkv[..., :384].numpy(), rtol=1e-4, atol=1e-4)
