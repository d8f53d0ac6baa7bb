"""Shared fixtures: a few small images on disk and the two offline models, built once per session."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from threads import single_thread

from braincode.data.core import Stimuli
from braincode.features import get_extractor

CAPTIONS = (
    "a cat sleeping on a red sofa",
    "two people riding bicycles along a beach at sunset",
    "a plate of pasta",
    "an old stone bridge over a river in the mountains, with trees on both banks and fog",
    "a dog",
    "a street market full of fruit stalls",
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_module(one_torch_thread):
    """Every features test module runs on one torch thread."""


@pytest.fixture(scope="session")
def image_stimuli(tmp_path_factory) -> Stimuli:
    """Six distinct RGB images of different sizes (so resizing and cropping are exercised), with captions."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(len(CAPTIONS)):
        pixels = rng.integers(0, 256, size=(48 + 8 * i, 64, 3), dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return Stimuli(ids=[p.stem for p in paths], paths=paths, captions=CAPTIONS)


@pytest.fixture(scope="package")
def tiny_vit():
    with single_thread():
        return get_extractor(
            "open_clip:tiny-vit@random", layers=["pooled", "blocks.0", "blocks.3"], device="cpu"
        )


@pytest.fixture(scope="package")
def minilm():
    with single_thread():
        return get_extractor("minilm", layers=["pooled", "hidden.0", "hidden.3", "hidden.6"], device="cpu")
