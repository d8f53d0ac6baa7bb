"""Vision extractors: images -> ``"pooled"`` embedding and ``"blocks.{i}"`` token maps (n, T, D)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn

from braincode.data.core import Stimuli
from braincode.errors import DataFormatError
from braincode.features.extractor import Extractor
from braincode.features.hooks import capture_outputs

_MAX_LOAD_THREADS = 8

#: ``run(x, block_indices) -> (pooled (B, D), {i: tokens (B, T, D)})``: one forward pass of a vision model.
VisionRun = Callable[[torch.Tensor, Sequence[int]], tuple[torch.Tensor, dict[int, torch.Tensor]]]

#: A facet layer (e.g. ``"blocks.11.q"``): the module whose output holds it, and how to read it from that output.
Facet = tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]

#: Side the images are resized to before DINOv2's zero padding: the NSD stimuli's own 425 px, which the
#: transformer brain encoder feeds unresized (padded to 434 px: a 31 x 31 patch grid).
DINOV2_IMAGE_SIZE = 425


class PatchPad:
    """PIL image -> normalised tensor zero-padded at the bottom and right to a multiple of the patch size.

    How the transformer brain encoder feeds DINOv2 (its ``datasets/nsd.py``): ``ToTensor``, ``Normalize``, then
    zeros appended so that both sides are multiples of ``patch``. Images are first resized to ``image_size``
    square (bicubic; a no-op for NSD's 425 px stimuli) so that every image gives the same patch grid.

    Examples
    --------
    >>> from PIL import Image
    >>> pad = PatchPad(14, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), image_size=20)
    >>> x = pad(Image.new("RGB", (20, 20), (255, 255, 255)))
    >>> tuple(x.shape), float(x[0, 19, 19]), float(x[0, 20, 20]), pad.grid
    ((3, 28, 28), 1.0, 0.0, (2, 2))
    """

    def __init__(self, patch: int, mean: Sequence[float], std: Sequence[float],
                 image_size: int = DINOV2_IMAGE_SIZE) -> None:
        self.patch, self.image_size = int(patch), int(image_size)
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1)
        side = math.ceil(self.image_size / self.patch)
        self.grid = (side, side)

    def __call__(self, image: Any) -> torch.Tensor:
        image = image.convert("RGB")
        if image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), resample=3)  # PIL bicubic
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - self.mean) / self.std
        side = self.grid[0] * self.patch
        return torch.nn.functional.pad(x, (0, side - x.shape[2], 0, side - x.shape[1]))

    def __repr__(self) -> str:
        return (f"PatchPad(patch={self.patch}, image_size={self.image_size}, mean={self.mean.flatten().tolist()}, "
                f"std={self.std.flatten().tolist()})")


def hooked_run(
    forward: Callable[[torch.Tensor], torch.Tensor], blocks: Sequence[nn.Module], *, batch_first: bool = True
) -> VisionRun:
    """A :data:`VisionRun` that calls ``forward`` once and collects block outputs with forward hooks.

    Parameters
    ----------
    forward : callable
        Images (B, 3, H, W) -> pooled embedding (B, D).
    blocks : sequence of nn.Module
        The transformer blocks, in order; each outputs tokens.
    batch_first : bool
        False when the blocks output (T, B, D); those are transposed to (B, T, D).
    """

    def run(x: torch.Tensor, wanted: Sequence[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        with capture_outputs({str(i): blocks[i] for i in wanted}) as out:
            pooled = forward(x)
        tokens = {i: out[str(i)] if batch_first else out[str(i)].transpose(0, 1) for i in wanted}
        return pooled, tokens

    return run


def load_images(
    stimuli: Stimuli, index: Sequence[int], transform: Callable[[Any], torch.Tensor]
) -> torch.Tensor:
    """Open and transform ``stimuli[index]`` on a few threads (decoding and resizing release the GIL).

    Returns
    -------
    Tensor of shape (len(index), 3, H, W), in the order of ``index``.
    """
    workers = max(1, min(_MAX_LOAD_THREADS, len(index), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return torch.stack(list(pool.map(lambda i: transform(stimuli.image(int(i))), index)))


class VisionExtractor(Extractor):
    """Extractor of an image model; see :class:`Extractor` for the shared attributes.

    Attributes
    ----------
    num_prefix_tokens : int or None
        Tokens before the patch tokens in each ``blocks.{i}`` map (class and register tokens).
    grid : tuple of int or None
        Patch grid (gh, gw): ``T = num_prefix_tokens + gh * gw``.
    transform : callable
        PIL image -> tensor (3, H, W), the model's own preprocessing.
    facets : dict of str to Facet
        Extra layers read from inside a block, e.g. ``"blocks.{i}.q"``: the attention query projection of block
        ``i`` (the transformer brain encoder's input), tokens laid out as ``"blocks.{i}"``.
    """

    kind = "vision"

    def __init__(
        self,
        *,
        transform: Callable[[Any], torch.Tensor],
        run: VisionRun,
        n_blocks: int,
        num_prefix_tokens: int | None,
        grid: tuple[int, int] | None,
        facets: Mapping[str, Facet] | None = None,
        **common: Any,
    ) -> None:
        self.transform = transform
        self._run = run
        self.num_prefix_tokens = num_prefix_tokens
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.facets = dict(facets or {})
        super().__init__(layers=["pooled", *(f"blocks.{i}" for i in range(n_blocks)), *self.facets], **common)

    def run(
        self, x: torch.Tensor, blocks: Sequence[int] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """One forward pass on preprocessed images: the pooled embedding and the tokens of ``blocks``.

        Unlike :meth:`extract`, this runs outside inference mode, so gradients flow back to ``x`` (e.g. for
        image optimisation through a fitted encoder).

        Parameters
        ----------
        x : Tensor of shape (B, 3, H, W)
            Images already preprocessed as :attr:`transform` does, on :attr:`device`.
        blocks : sequence of int
            Block indices whose outputs are wanted.

        Returns
        -------
        pooled : Tensor of shape (B, D)
        tokens : dict of int to Tensor of shape (B, T, D)

        Examples
        --------
        >>> ext = get_extractor("open_clip:tiny-vit@random", device="cpu")  # doctest: +SKIP
        >>> x = torch.zeros(1, 3, 224, 224, requires_grad=True)  # doctest: +SKIP
        >>> pooled, tokens = ext.run(x, [1])  # doctest: +SKIP
        >>> pooled.shape, tokens[1].shape  # doctest: +SKIP
        (torch.Size([1, 64]), torch.Size([1, 50, 128]))
        """
        return self._run(x, list(blocks))

    def run_layers(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """One forward pass on preprocessed images returning the layers ``names`` (pooled, blocks, facets).

        Like :meth:`run`, outside inference mode: gradients flow back to ``x``.
        """
        facets = {name: self.facets[name] for name in names if name in self.facets}
        wanted = [int(name.split(".")[1]) for name in names if name.startswith("blocks.") and name not in facets]
        with capture_outputs({name: module for name, (module, _) in facets.items()}) as out:
            pooled, tokens = self.run(x, wanted)
        found = {"pooled": pooled, **{f"blocks.{i}": t for i, t in tokens.items()},
                 **{name: read(out[name]) for name, (_, read) in facets.items()}}
        return {name: found[name] for name in names}

    def _inputs(self, stimuli: Stimuli | Sequence[str]) -> tuple[Stimuli, list[str]]:
        if not isinstance(stimuli, Stimuli) or not stimuli.has_images:
            raise DataFormatError(
                f"{self.model_id} is an image model and needs image files",
                expected="Stimuli with images (e.g. from braincode.data.load_algonauts or load_nsd)",
                found="text" if not isinstance(stimuli, Stimuli) else "Stimuli without paths",
                fix="pass image stimuli, or pick a text model (e.g. 'minilm') for captions",
            )
        return stimuli, list(stimuli.content_hashes)

    def _run_batch(self, source: Stimuli, index: np.ndarray) -> dict[str, torch.Tensor]:
        x = load_images(source, index, self.transform).to(self.device)
        return self.run_layers(x, self.requested)
