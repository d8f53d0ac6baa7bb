"""Vision extractors: images -> ``"pooled"`` embedding and ``"blocks.{i}"`` token maps (n, T, D)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
        **common: Any,
    ) -> None:
        self.transform = transform
        self._run = run
        self.num_prefix_tokens = num_prefix_tokens
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        super().__init__(layers=["pooled", *(f"blocks.{i}" for i in range(n_blocks))], **common)

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
        wanted = [int(name.split(".")[1]) for name in self.requested if name.startswith("blocks.")]
        pooled, tokens = self.run(x, wanted)
        found = {"pooled": pooled, **{f"blocks.{i}": t for i, t in tokens.items()}}
        return {name: found[name] for name in self.requested}
