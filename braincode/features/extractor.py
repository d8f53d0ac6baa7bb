"""The :class:`Extractor`: one forward pass per batch returns every requested layer, optionally cached."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from braincode.data.core import Stimuli
from braincode.errors import ConfigError
from braincode.features.store import CacheKey, FeatureStore
from braincode.progress import progress as progress_bar

log = logging.getLogger(__name__)

#: ``allocate(layer, shape)`` -> a float32 array to fill (in memory, or on disk in a FeatureStore).
Allocate = Callable[[str, tuple[int, ...]], np.ndarray]


def _in_memory(layer: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=np.float32)


class Extractor(ABC):
    """Features of one model for a set of stimuli: ``{layer: float32 array}``.

    Built by :func:`braincode.features.get_extractor`; not meant to be constructed directly.

    Attributes
    ----------
    model_id : str
        The id it was built from, e.g. ``"open_clip:ViT-B-32@openai"``.
    kind : str
        ``"vision"`` or ``"text"``.
    layers : list of str
        Every layer name this model offers.
    requested : list of str
        The layers that :meth:`extract` returns.
    model : torch.nn.Module
        The network run on each batch (one call per batch).
    fingerprint : str
        Identifies the weights (a file hash, or a hash of the seeded random weights).
    preprocess : str
        Describes the preprocessing (the image transform's repr, or the tokenizer settings).
    device : torch.device
        Where the model runs.
    """

    kind: str = ""

    def __init__(
        self,
        *,
        model_id: str,
        model: nn.Module,
        layers: Sequence[str],
        requested: Sequence[str] | None,
        fingerprint: str,
        preprocess: str,
        device: torch.device,
    ) -> None:
        self.model_id = model_id
        self.model = model.eval().requires_grad_(False)
        self.layers = list(layers)
        self.fingerprint = fingerprint
        self.preprocess = preprocess
        self.device = device
        if requested is None or isinstance(requested, str):
            requested = ["pooled"] if requested is None else [requested]
        self.requested = self._check_layers(list(requested))

    def _check_layers(self, requested: list[str]) -> list[str]:
        unknown = [name for name in requested if name not in self.layers]
        if unknown or not requested:
            raise ConfigError(
                f"{self.model_id} has no layer(s) {unknown}" if unknown else "no layers were asked for",
                expected=f"names among {self.layers}",
                found=str(requested),
                fix='pick layers from the list above, e.g. ["pooled"]',
            )
        return list(dict.fromkeys(requested))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r}, layers={self.requested}, device={self.device})"

    def cache_key(self, layer: str) -> CacheKey:
        """The :class:`CacheKey` under which ``layer``'s features of this model are stored."""
        return CacheKey(self.model_id, self.fingerprint, layer, self.preprocess)

    def extract(
        self,
        stimuli: Stimuli | Sequence[str],
        *,
        batch_size: int = 32,
        store: FeatureStore | None = None,
        progress: bool = True,
    ) -> dict[str, np.ndarray]:
        """Features of ``stimuli`` for every requested layer, one forward pass per batch.

        Parameters
        ----------
        stimuli : Stimuli or sequence of str
            Images (vision models, from ``Stimuli.paths``) or texts (text models: ``Stimuli.captions`` or a list
            of strings).
        batch_size : int
            Stimuli per forward pass.
        store : FeatureStore, optional
            Cache: stimuli already stored (same model, weights, layer, preprocessing and content) are read
            instead of computed; newly computed ones are added.
        progress : bool
            Show a progress bar (also off when ``BRAINCODE_PROGRESS=0``).

        Returns
        -------
        dict of str to ndarray
            One float32 array per requested layer, stimuli first: ``(n, D)`` or ``(n, T, D)`` token maps.
            Arrays read from a store are memory-mapped when they can be (see :class:`FeatureStore`).

        Examples
        --------
        >>> ext = get_extractor("minilm", layers=["pooled", "hidden.6"])  # doctest: +SKIP
        >>> feats = ext.extract(["a cat on a mat", "a red car"], progress=False)  # doctest: +SKIP
        >>> feats["pooled"].shape  # doctest: +SKIP
        (2, 384)
        """
        if batch_size < 1:
            raise ConfigError(
                "batch_size must be positive", expected="an integer >= 1", found=str(batch_size)
            )
        source, hashes = self._inputs(stimuli)
        if not hashes:
            raise ConfigError(
                "no stimuli to extract features from", expected="at least one stimulus", found="0"
            )
        if store is None:
            return self._compute(source, np.arange(len(hashes)), batch_size, progress)
        keys = {layer: self.cache_key(layer) for layer in self.requested}
        return store.fetch(
            keys, hashes, lambda idx, allocate: self._compute(source, idx, batch_size, progress, allocate)
        )

    def _compute(
        self, source: Any, index: np.ndarray, batch_size: int, progress: bool, allocate: Allocate = _in_memory
    ) -> dict[str, np.ndarray]:
        """Run the model over ``source[index]`` in batches, filling one array per layer from ``allocate``."""
        out: dict[str, np.ndarray] = {}
        starts = range(0, len(index), batch_size)
        bar = progress_bar(starts, desc=f"features {self.model_id}", total=len(starts), enabled=progress)
        with torch.inference_mode():
            for start in bar:
                chunk = index[start : start + batch_size]
                for layer, value in self._run_batch(source, chunk).items():
                    value = value.detach().to("cpu", torch.float32).numpy()
                    if layer not in out:
                        out[layer] = allocate(layer, (len(index), *value.shape[1:]))
                    out[layer][start : start + len(chunk)] = value
        return out

    @abstractmethod
    def _inputs(self, stimuli: Stimuli | Sequence[str]) -> tuple[Any, list[str]]:
        """Validate ``stimuli``; return what :meth:`_run_batch` reads and one content hash per stimulus."""

    @abstractmethod
    def _run_batch(self, source: Any, index: np.ndarray) -> dict[str, torch.Tensor]:
        """One forward pass over ``source[index]``; every requested layer, batch first."""
