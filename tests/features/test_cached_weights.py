"""Pretrained weights already in a local hub cache are found and loaded, without any network."""

from __future__ import annotations

import numpy as np
import timm
import torch
from safetensors.torch import save_file

from braincode.features import get_extractor


def test_timm_weights_from_hub_cache_are_loaded(tmp_path, monkeypatch, image_stimuli):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)  # weights that no @random model has
        source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    repo = tmp_path / "hub" / "models--timm--vit_tiny_patch16_224.augreg_in21k"
    blob = "ab" * 32
    (repo / "blobs").mkdir(parents=True)
    save_file(source.state_dict(), repo / "blobs" / blob)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(repo / "blobs" / blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))

    ext = get_extractor("timm:vit_tiny_patch16_224@augreg_in21k", layers=["pooled", "blocks.5"], device="cpu")
    assert ext.fingerprint == f"vit_tiny_patch16_224.augreg_in21k:{blob}"
    stimuli = image_stimuli.subset([0, 1])
    feats = ext.extract(stimuli)
    x = torch.stack([ext.transform(stimuli.image(i)) for i in range(2)])
    with torch.inference_mode():
        expected = source(x).numpy()
    np.testing.assert_allclose(feats["pooled"], expected, atol=1e-5, rtol=0)
