"""timm extraction against timm's own forward_intermediates and pooled head."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from braincode.features import get_extractor


@pytest.fixture(scope="module")
def extractor():
    return get_extractor(
        "timm:vit_tiny_patch16_224@random", layers=["pooled", "blocks.0", "blocks.11"], device="cpu"
    )


def test_blocks_and_pooled_equal_timm(extractor, image_stimuli):
    stimuli = image_stimuli.subset([0, 3, 5])
    feats = extractor.extract(stimuli, batch_size=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    x = torch.stack([extractor.transform(stimuli.image(i)) for i in range(len(stimuli))])
    with torch.inference_mode():
        inter = reference.forward_intermediates(
            x, return_prefix_tokens=True, output_fmt="NLC", intermediates_only=True
        )
        pooled = reference(x).numpy()
    assert (extractor.num_prefix_tokens, extractor.grid) == (1, (14, 14))
    for i in (0, 11):
        patches, prefix = inter[i]
        expected = torch.cat([prefix, patches], dim=1).numpy()
        assert feats[f"blocks.{i}"].shape == (3, 197, 192)
        np.testing.assert_allclose(feats[f"blocks.{i}"], expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(feats["pooled"], pooled, atol=1e-5, rtol=0)
