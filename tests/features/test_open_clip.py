"""open_clip extraction against open_clip itself: encode_image and a manual pass through the resblocks."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from braincode.features import get_extractor
from braincode.features.sources.open_clip_models import TINY_CONFIGS


@pytest.fixture(scope="module")
def reference():
    """The same tiny architecture built directly with open_clip under torch seed 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(
            "ViT-B-32", pretrained=None, pretrained_text=False, **TINY_CONFIGS["tiny-vit"]
        )
    return model.eval(), preprocess


def _images(stimuli, preprocess) -> torch.Tensor:
    return torch.stack([preprocess(stimuli.image(i)) for i in range(len(stimuli))])


def test_tiny_vit_is_a_small_open_clip_vit(tiny_vit):
    visual = tiny_vit.model.visual
    assert isinstance(visual, open_clip.transformer.VisionTransformer)
    assert visual.image_size == (224, 224) and visual.patch_size == (32, 32)
    assert len(visual.transformer.resblocks) == 4 and visual.transformer.width == 128
    assert tiny_vit.layers == ["pooled", "blocks.0", "blocks.1", "blocks.2", "blocks.3"]
    assert (tiny_vit.kind, tiny_vit.num_prefix_tokens, tiny_vit.grid) == ("vision", 1, (7, 7))


def test_pooled_equals_encode_image(tiny_vit, image_stimuli, reference):
    model, preprocess = reference
    feats = tiny_vit.extract(image_stimuli, batch_size=4)
    with torch.inference_mode():
        expected = model.encode_image(_images(image_stimuli, preprocess)).numpy()
    assert feats["pooled"].dtype == np.float32 and feats["pooled"].shape == (len(image_stimuli), 64)
    np.testing.assert_allclose(feats["pooled"], expected, atol=1e-5, rtol=0)


def test_blocks_equal_manual_forward_through_resblocks(tiny_vit, image_stimuli, reference):
    model, preprocess = reference
    feats = tiny_vit.extract(image_stimuli, batch_size=4)
    visual = model.visual
    with torch.inference_mode():
        x = visual.conv1(_images(image_stimuli, preprocess))  # (B, width, 7, 7)
        x = x.flatten(2).transpose(1, 2)  # (B, 49, width), row-major patches
        cls = visual.class_embedding.expand(len(x), 1, -1)
        x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
        outputs = []
        for block in visual.transformer.resblocks:
            x = block(x)
            outputs.append(x.numpy())
    for i in (0, 3):
        assert feats[f"blocks.{i}"].shape == (len(image_stimuli), 50, 128)
        np.testing.assert_allclose(feats[f"blocks.{i}"], outputs[i], atol=1e-5, rtol=0)


def test_hooks_are_removed_after_extraction(tiny_vit, image_stimuli):
    tiny_vit.extract(image_stimuli.subset([0, 1]))
    assert all(not block._forward_hooks for block in tiny_vit.model.visual.transformer.resblocks)


def test_random_weights_are_deterministic_and_leave_global_rng_alone(tiny_vit, image_stimuli):
    state = torch.get_rng_state()
    again = get_extractor("open_clip:tiny-vit@random", layers=["blocks.3", "pooled"], device="cpu")
    assert torch.equal(state, torch.get_rng_state())
    assert again.fingerprint == tiny_vit.fingerprint
    first, second = tiny_vit.extract(image_stimuli), again.extract(image_stimuli)
    assert set(second) == {"blocks.3", "pooled"}
    for layer in second:
        np.testing.assert_array_equal(first[layer], second[layer])


def test_run_lets_gradients_reach_the_pixels(tiny_vit):
    x = torch.rand(2, 3, 224, 224, requires_grad=True)
    pooled, tokens = tiny_vit.run(x, [1])
    assert pooled.shape == (2, 64) and tokens[1].shape == (2, 50, 128)
    (pooled.sum() + tokens[1][:, 1:].pow(2).mean()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_vit.model.parameters())  # weights stay frozen


def test_text_tower_equals_encode_text(reference, image_stimuli):
    model, _ = reference
    ext = get_extractor("open_clip_text:tiny-vit@random", device="cpu")
    assert (ext.kind, ext.layers) == ("text", ["pooled"])
    texts = list(image_stimuli.captions)
    with torch.inference_mode():
        expected = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(texts)).numpy()
    feats = ext.extract(image_stimuli, batch_size=4)
    assert feats["pooled"].shape == (len(texts), 64)  # the image embedding's space
    np.testing.assert_allclose(feats["pooled"], expected, atol=1e-5, rtol=0)
