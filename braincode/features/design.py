"""Design matrices: which model features, pooled how, make up the inputs of an encoder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from braincode.data.core import Stimuli
from braincode.errors import ConfigError
from braincode.features.pooling import POOL_MODES, pool_tokens
from braincode.features.registry import get_extractor
from braincode.features.store import FeatureStore


@dataclass(frozen=True)
class FeatureSpec:
    """Which model features make up the design matrix.

    Parameters
    ----------
    model_id : str
        ``source:name[@pretrained]``, e.g. ``open_clip:ViT-B-32@openai``.
    layers : sequence of str
        Layer names of the extractor (``"pooled"``, ``"blocks.3"``, ...).
    pool : str
        How token maps ``(n, T, D)`` become vectors: ``"grid"``, ``"mean"`` or ``"cls"``.
    out_grid : int
        Side of the pooled patch grid when ``pool="grid"``.
    """

    model_id: str
    layers: tuple[str, ...] = ("pooled",)
    pool: str = "grid"
    out_grid: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.pool not in POOL_MODES:
            raise ConfigError(f"unknown pooling mode {self.pool!r}", expected=" or ".join(POOL_MODES),
                              found=repr(self.pool), fix="pick one of the modes above")


def extract_spaces(
    stimuli: dict[str, Stimuli],
    spec: FeatureSpec,
    *,
    store: FeatureStore | None = None,
    device: str = "auto",
    batch_size: int = 32,
    text: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Extract ``spec``'s layers for each named set of stimuli: ``{set: {layer: (n, p) float32}}``.

    Token maps are pooled as ``spec`` says. With ``text=True`` the model reads the stimuli's captions instead of
    their images. The model is built once for all sets, and each set takes one forward pass for all layers.
    """
    if text and any(s.captions is None for s in stimuli.values()):
        raise ConfigError(
            "text features need captions",
            expected="a captions.csv beside the images (columns image, caption)",
            found="stimuli without captions",
            fix="add the captions file, or drop --text-features",
        )
    extractor = get_extractor(spec.model_id, layers=list(spec.layers), device=device)
    spaces = {}
    for split, stim in stimuli.items():
        feats = extractor.extract(stim, batch_size=batch_size, store=store)
        spaces[split] = {}
        for name in spec.layers:
            x = np.asarray(feats[name], dtype=np.float32)
            if x.ndim == 3:
                x = pool_tokens(
                    x,
                    num_prefix_tokens=extractor.num_prefix_tokens,
                    grid=extractor.grid,
                    mode=spec.pool,
                    out_grid=spec.out_grid,
                )
            spaces[split][name] = x.reshape(len(x), -1)
    return spaces


def extract_design(
    stimuli: dict[str, Stimuli],
    spec: FeatureSpec,
    *,
    store: FeatureStore | None = None,
    device: str = "auto",
    batch_size: int = 32,
    text: bool = False,
) -> dict[str, np.ndarray]:
    """Extract ``spec``'s layers for each named set of stimuli, as one (n, p) float32 design matrix per set.

    The layers of :func:`extract_spaces` concatenated in order.
    """
    spaces = extract_spaces(stimuli, spec, store=store, device=device, batch_size=batch_size, text=text)
    return {split: stack_spaces(x)[0] for split, x in spaces.items()}


def stack_spaces(spaces: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, slice]]:
    """Put named feature spaces side by side: the (n, p) design matrix and each space's column slice (for banded
    ridge and variance partitioning).

    Examples
    --------
    >>> X, columns = stack_spaces({"vision": np.ones((2, 3)), "text": np.zeros((2, 1))})
    >>> X.shape, columns
    ((2, 4), {'vision': slice(0, 3, None), 'text': slice(3, 4, None)})
    """
    widths = [x.shape[1] for x in spaces.values()]
    ends = np.cumsum(widths).tolist()
    columns = {name: slice(end - width, end) for name, width, end in zip(spaces, widths, ends)}
    return np.concatenate([np.asarray(x, dtype=np.float32) for x in spaces.values()], axis=1), columns
