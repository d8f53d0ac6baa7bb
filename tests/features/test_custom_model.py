"""``extractor_from_model``: the user's own torch model gives the outputs of its named modules, cached by weights."""

import numpy as np
import pytest
import torch
from torch import nn

from braincode.errors import ConfigError
from braincode.features import FeatureStore, extractor_from_model, get_extractor
from braincode.features.custom import default_transform
from braincode.features.vision import load_images


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


def test_outputs_equal_a_direct_forward_and_are_cached(image_stimuli, tmp_path):
    net = _net(0)
    ext = extractor_from_model(net, layers=["2", "5"], device="cpu")
    feats = ext.extract(image_stimuli, batch_size=4, progress=False)
    x = load_images(image_stimuli, range(len(image_stimuli)), default_transform())
    with torch.no_grad():
        conv = net[:3](x)
        np.testing.assert_allclose(feats["2"], conv.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(feats["5"], net(x).numpy(), rtol=1e-5, atol=1e-6)
    store = FeatureStore(tmp_path / "cache")
    first = ext.extract(image_stimuli, store=store, progress=False)["5"]
    again = extractor_from_model(_net(0), layers=["5"], device="cpu").extract(image_stimuli, store=store,
                                                                               progress=False)["5"]
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    other = extractor_from_model(_net(1), layers=["5"], device="cpu")
    assert other.cache_key("5") != ext.cache_key("5")  # other weights, other cache entry


def test_a_real_vit_from_the_registry_works_through_it(image_stimuli):
    """The model of a registered extractor, handed over as a plain module: its blocks' outputs are the same."""
    tiny = get_extractor("open_clip:tiny-vit@random", layers=["blocks.1"], device="cpu")
    ext = extractor_from_model(tiny.model.visual, layers=["transformer.resblocks.1"], transform=tiny.transform,
                               device="cpu")
    ours = ext.extract(image_stimuli, progress=False)["transformer.resblocks.1"]
    ref = tiny.extract(image_stimuli, progress=False)["blocks.1"]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_bad_layers_and_models_are_explained():
    with pytest.raises(ConfigError, match="has no layer"):
        extractor_from_model(_net(0), layers=["conv9"], device="cpu")
    with pytest.raises(ConfigError, match="torch model"):
        extractor_from_model(lambda x: x, layers=["0"], device="cpu")
