"""``extractor_from_model``: features from the user's own torch model, beside :func:`get_extractor`.

As THINGSvision's ``get_extractor_from_model``: any ``nn.Module`` taking a batch of images, and the names of the
modules whose outputs are wanted (as in ``model.named_modules()``); one forward pass per batch fills every layer,
and the result plugs into everything an extractor does (a :class:`~braincode.features.FeatureStore` cache keyed by
a hash of the weights, pooling, design matrices).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision import transforms as T

from braincode.data.core import Stimuli
from braincode.devices import resolve_device
from braincode.errors import ConfigError
from braincode.features.extractor import Extractor
from braincode.features.hooks import capture_outputs
from braincode.features.vision import VisionExtractor, load_images
from braincode.features.weights import module_fingerprint

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def default_transform(image_size: int = 224) -> T.Compose:
    """Resize the shorter side to ``image_size`` (bicubic), centre-crop a square, ImageNet normalisation."""
    return T.Compose([T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class ModelExtractor(Extractor):
    """Extractor over named submodules of a user's model (built by :func:`extractor_from_model`).

    ``extract`` returns each requested module's output, batch first, as float32 (a module returning a tuple
    contributes its first element).
    """

    kind = "vision"

    def __init__(self, model: nn.Module, *, transform: Callable[[Any], torch.Tensor], **common: Any) -> None:
        self.transform = transform
        self.modules = dict(model.named_modules())
        super().__init__(model=model, layers=[name for name in self.modules if name], **common)

    _inputs = VisionExtractor._inputs

    def _run_batch(self, source: Stimuli, index: np.ndarray) -> dict[str, torch.Tensor]:
        x = load_images(source, index, self.transform).to(self.device)
        with capture_outputs({name: self.modules[name] for name in self.requested}) as out:
            self.model(x)
        return {name: out[name] for name in self.requested}


def extractor_from_model(
    model: nn.Module,
    layers: Sequence[str],
    *,
    transform: Callable[[Any], torch.Tensor] | None = None,
    model_id: str | None = None,
    device: str = "auto",
) -> ModelExtractor:
    """An :class:`~braincode.features.Extractor` for your own image model.

    Parameters
    ----------
    model : nn.Module
        Called as ``model(images)`` on a batch ``(B, 3, H, W)``; put in eval mode, gradients off.
    layers : sequence of str
        Module names, as in ``dict(model.named_modules())`` (e.g. ``"layer4"``, ``"blocks.3"``).
    transform : callable, optional
        PIL image -> tensor ``(3, H, W)``; default :func:`default_transform` (224 px, ImageNet normalisation).
    model_id : str, optional
        Name recorded with cached features (default ``custom:<class name>``); the cache key also holds a hash of
        the weights, so two different models never share features.
    device : {"auto", "cpu", "cuda"}
        Where the model runs.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> ext = extractor_from_model(net, layers=["0", "3"], device="cpu")
    >>> ext.model_id, ext.requested, ext.layers
    ('custom:Sequential', ['0', '3'], ['0', '1', '2', '3'])
    """
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(model, nn.Module):
        raise ConfigError("extractor_from_model needs a torch model", expected="a torch.nn.Module",
                          found=type(model).__name__)
    device = resolve_device(device)
    transform = default_transform() if transform is None else transform
    return ModelExtractor(model.to(device), transform=transform, model_id=model_id or f"custom:{type(model).__name__}",
                          requested=list(layers), fingerprint=f"custom:{module_fingerprint(model)}",
                          preprocess=repr(transform), device=device)
