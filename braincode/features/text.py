"""Text extractors: texts -> ``"pooled"`` (mean over real tokens of the last layer) and ``"hidden.{i}"``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from braincode.data.core import Stimuli
from braincode.errors import DataFormatError
from braincode.features.extractor import Extractor


def text_hash(text: str) -> str:
    """Content hash of a text stimulus (SHA-256 of its UTF-8 bytes, as :attr:`Stimuli.content_hashes`)."""
    return hashlib.sha256(text.encode()).hexdigest()


def texts_of(stimuli: Stimuli | Sequence[str]) -> list[str]:
    """The texts of ``stimuli``: their captions, or the strings themselves."""
    if isinstance(stimuli, Stimuli):
        if stimuli.captions is None:
            raise DataFormatError(
                "a text model needs captions but these stimuli have none",
                expected="Stimuli(..., captions=[...]) or a list of strings",
                found=f"{len(stimuli)} stimuli without captions",
                fix="load the captions file with the dataset, or pass a list of strings",
            )
        return list(stimuli.captions)
    if isinstance(stimuli, str) or not all(isinstance(t, str) for t in stimuli):
        raise DataFormatError(
            "a text model reads a list of strings",
            expected="Stimuli with captions, or a list of str",
            found=type(stimuli).__name__ if isinstance(stimuli, str) else "non-string entries",
            fix='wrap a single text in a list: ["a photo of a cat"]',
        )
    return list(stimuli)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, L, D) over the positions where ``mask`` (B, L) is 1 (padding left out).

    Examples
    --------
    >>> h = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> masked_mean(h, torch.tensor([[1, 1, 0]])).item()
    2.0
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class _TextModel(Extractor):
    """Shared by text extractors: the inputs are texts, hashed by content."""

    kind = "text"

    def _inputs(self, stimuli: Stimuli | Sequence[str]) -> tuple[list[str], list[str]]:
        texts = texts_of(stimuli)
        return texts, [text_hash(t) for t in texts]


class ClipTextExtractor(_TextModel):
    """Text tower of an open_clip model: ``"pooled"`` is ``encode_text`` (unnormalised), in the image space.

    Attributes
    ----------
    tokenizer : callable
        open_clip's tokenizer: list of str -> token ids (B, context_length).
    """

    def __init__(self, *, tokenizer: Any, **common: Any) -> None:
        self.tokenizer = tokenizer
        super().__init__(layers=["pooled"], **common)

    def _run_batch(self, source: list[str], index: np.ndarray) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer([source[int(i)] for i in index]).to(self.device)
        return {"pooled": self.model.encode_text(tokens)}


class TextExtractor(_TextModel):
    """Extractor of a transformers text encoder; see :class:`Extractor` for the shared attributes.

    ``"pooled"`` is the mean of the last hidden state over non-padding tokens (sentence-transformers' mean
    pooling, unnormalised); ``"hidden.{i}"`` is the same mean of transformers' ``hidden_states[i]``
    (``hidden.0`` = embeddings, the last one = ``pooled``).

    Attributes
    ----------
    tokenizer : transformers tokenizer
    max_length : int
        Longer texts are truncated to this many tokens.
    """

    def __init__(self, *, tokenizer: Any, max_length: int, n_layers: int, **common: Any) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        super().__init__(layers=["pooled", *(f"hidden.{i}" for i in range(n_layers + 1))], **common)

    def _run_batch(self, source: list[str], index: np.ndarray) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            [source[int(i)] for i in index],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        need_hidden = any(name.startswith("hidden.") for name in self.requested)
        out = self.model(**batch, output_hidden_states=need_hidden)
        mask = batch["attention_mask"]
        return {
            name: masked_mean(
                out.last_hidden_state if name == "pooled" else out.hidden_states[int(name.split(".")[1])],
                mask,
            )
            for name in self.requested
        }
