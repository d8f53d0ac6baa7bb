"""Attention capture from open_clip and timm ViTs (random weights, tiny), rollout and flow by hand."""

from __future__ import annotations

import pytest
import timm
import torch
from open_clip.transformer import VisionTransformer
from torch import nn

from braincode.errors import ConfigError
from braincode.kernels.maps import attention_flow, attention_map, capture_attention, record_attention, rollout


@pytest.fixture(scope="module")
def clip_tower():
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, width=32, layers=3, heads=2, mlp_ratio=2.0,
                             output_dim=16).eval()


@pytest.fixture(scope="module")
def timm_vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=3).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _assert_distributions(probs: torch.Tensor) -> None:
    assert probs.min() >= 0
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))


def test_rollout_two_layers_by_hand():
    # two heads per layer, averaging to A1 = [[1, 0], [0.5, 0.5]] and A2 = [[0.2, 0.8], [0.6, 0.4]]
    a1 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    a2 = torch.tensor([[[0.4, 0.6], [1.0, 0.0]], [[0.0, 1.0], [0.2, 0.8]]], dtype=torch.float64)
    # 0.5 A + 0.5 I (rows already sum to 1):  A1^ = [[1, 0], [0.25, 0.75]],  A2^ = [[0.6, 0.4], [0.3, 0.7]]
    # rollout = A2^ @ A1^ = [[0.6 + 0.4 * 0.25, 0.4 * 0.75], [0.3 + 0.7 * 0.25, 0.7 * 0.75]]
    expected = torch.tensor([[0.7, 0.3], [0.475, 0.525]], dtype=torch.float64)
    torch.testing.assert_close(rollout([a1, a2])[0], expected)
    # residual 0: plain product of the head-averaged maps
    torch.testing.assert_close(rollout([a1, a2], residual=0.0)[0], a2.mean(0) @ a1.mean(0))


def test_flow_by_hand():
    g = torch.Generator().manual_seed(2)
    a1, a2 = (torch.softmax(torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64), -1) for _ in range(2))
    aug1, aug2 = (0.5 * a.mean(1)[0] + 0.5 * torch.eye(4, dtype=torch.float64) for a in (a1, a2))
    # one layer: the single edge's capacity; two layers: edge-disjoint paths token -> m -> j
    torch.testing.assert_close(attention_flow([a1], token=2)[0], aug1[2], atol=1e-6, rtol=0)
    by_hand = torch.minimum(aug2[0][:, None], aug1).sum(0)
    torch.testing.assert_close(attention_flow([a1, a2], token=0)[0], by_hand, atol=1e-6, rtol=0)


def test_capture_open_clip(clip_tower, images):
    plain = clip_tower(images)
    maps = capture_attention(clip_tower, images)
    assert len(maps) == 3 and all(m.shape == (2, 2, 17, 17) for m in maps)
    for m in maps:
        _assert_distributions(m)
    assert not torch.allclose(maps[0][:, 0], maps[0][:, 1])  # per head, not averaged
    torch.testing.assert_close(clip_tower(images), plain)  # hooks removed, output unchanged
    # first layer by hand: softmax(q k^T / sqrt(d)) from the block's own projections of ln_1(tokens)
    with record_attention(clip_tower) as recorded, torch.no_grad():
        x = clip_tower.conv1(images).flatten(2).transpose(1, 2)
        cls = clip_tower.class_embedding.expand(2, 1, -1)
        x = clip_tower.ln_pre(torch.cat([cls, x], 1) + clip_tower.positional_embedding)
        block = clip_tower.transformer.resblocks[0]
        block(x)
        q, k, _ = nn.functional.linear(block.ln_1(x), block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, -1)
        q, k = (t.reshape(2, 17, 2, 16).transpose(1, 2) for t in (q, k))
        want = torch.softmax(q @ k.transpose(-1, -2) / 4.0, -1)
    torch.testing.assert_close(recorded[0], want, atol=1e-5, rtol=1e-5)


def test_capture_timm_restores_fused_flag(timm_vit):
    x = torch.randn(1, 3, 64, 64)
    flags = [b.attn.fused_attn for b in timm_vit.blocks]
    maps = capture_attention(timm_vit, x)
    assert len(maps) == 3 and maps[0].shape == (1, 3, 17, 17)
    for m in maps:
        _assert_distributions(m)
    assert [b.attn.fused_attn for b in timm_vit.blocks] == flags


@pytest.mark.parametrize("method", ["rollout", "flow"])
def test_vit_maps_are_valid(timm_vit, clip_tower, images, method):
    joint = rollout(capture_attention(timm_vit, torch.randn(2, 3, 64, 64)))
    assert joint.shape == (2, 17, 17)
    _assert_distributions(joint)
    grid = attention_map(clip_tower, images[0], method=method)
    assert grid.shape == (4, 4) and grid.min() >= 0
    full = rollout(capture_attention(clip_tower, images[:1]))[0, 0] if method == "rollout" else None
    if full is not None:
        torch.testing.assert_close(grid.flatten(), full[1:])


def test_maps_bad_input(timm_vit):
    with pytest.raises(ConfigError, match="cannot find the attention layers"):
        capture_attention(nn.Linear(3, 3), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="unknown attention map method"):
        attention_map(timm_vit, torch.zeros(3, 64, 64), method="gradcam")
    with pytest.raises(ConfigError, match="takes one image"):
        attention_map(timm_vit, torch.zeros(2, 3, 64, 64))
    with pytest.raises(ConfigError, match="equal-shaped tensors"):
        rollout([torch.ones(1, 2, 3, 3), torch.ones(1, 2, 4, 4)])
    with pytest.raises(ConfigError, match="residual weight out of range"):
        rollout([torch.ones(1, 2, 3, 3)], residual=1.5)
    with pytest.raises(ConfigError, match="token index out of range"):
        attention_flow([torch.ones(1, 2, 3, 3) / 3], token=5)
