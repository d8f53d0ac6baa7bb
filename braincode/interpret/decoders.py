"""Caption decoders: turn embeddings (n, D) into sentences, behind one interface (:class:`CaptionDecoder`).

* :class:`RetrievalDecoder` — a **baseline**, not BrainSCUBA's decoder: the caption whose key (e.g. the CLIP text
  embedding of a bank caption, or the image embedding of a captioned bank image) is nearest in cosine.
* :class:`braincode.interpret.clipcap.PrefixDecoder` — ClipCap, the published BrainSCUBA decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from braincode.errors import DataFormatError
from braincode.interpret.scuba_encoder import unit_rows

log = logging.getLogger(__name__)


@runtime_checkable
class CaptionDecoder(Protocol):
    """Anything with ``decode(embeddings (n, D)) -> list of n captions``."""

    def decode(self, embeddings: np.ndarray) -> list[str]: ...


def _as_matrix(embeddings: np.ndarray, dim: int, what: str) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != dim:
        raise DataFormatError(f"{what} got embeddings of the wrong shape", expected=f"(n, {dim})",
                              found=str(np.shape(embeddings)), fix="use embeddings of the space the decoder knows")
    return x


class RetrievalDecoder:
    """Nearest caption in an embedding space: ``captions[argmax_j cos(e, keys_j)]``.

    Parameters
    ----------
    captions : sequence of str
        The candidate captions.
    keys : ndarray of shape (n_captions, D)
        One embedding per caption, in the space of the embeddings to decode (CLIP text embeddings of the
        captions, or image embeddings of the captioned images). Normalised here.
    key_chunk : int, optional
        Keys scored at a time (memory bound for large banks); default: a ~256 MiB score tile.

    Examples
    --------
    >>> import numpy as np
    >>> dec = RetrievalDecoder(["a face", "a house"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> dec.decode(np.array([[0.2, 0.9], [3.0, 1.0]]))
    ['a house', 'a face']
    """

    def __init__(self, captions: Sequence[str], keys: np.ndarray, *, key_chunk: int | None = None) -> None:
        keys = np.asarray(keys, dtype=np.float32)
        if keys.ndim != 2 or len(keys) != len(captions) or len(captions) == 0:
            raise DataFormatError("retrieval decoder needs one key per caption", expected=f"({len(captions)}, D)",
                                  found=str(keys.shape))
        self.captions = [str(c) for c in captions]
        self.keys = unit_rows(keys)
        self.key_chunk = key_chunk

    @classmethod
    def from_bank(cls, bank, encode_text=None) -> RetrievalDecoder:
        """Decoder over a captioned bank: keys are ``encode_text(captions)`` when given (CLIP text space), else the
        bank's own image embeddings."""
        if bank.captions is None:
            raise DataFormatError("the bank has no captions to retrieve", fix="build it from a folder with a "
                                  "captions.csv (columns image, caption)")
        keep = [i for i, c in enumerate(bank.captions) if c]
        captions = [bank.captions[i] for i in keep]
        keys = encode_text(captions) if encode_text is not None else np.asarray(bank.unit[keep])
        return cls(captions, keys)

    def nearest(self, embeddings: np.ndarray, k: int = 1) -> np.ndarray:
        """Indices (n, k) of the ``k`` nearest captions of each embedding, best first."""
        x = _as_matrix(embeddings, self.keys.shape[1], "RetrievalDecoder")
        from braincode.kernels import topk

        _, index = topk(torch.from_numpy(x), self.keys, k, key_chunk=self.key_chunk)
        return np.asarray(index)

    def decode(self, embeddings: np.ndarray) -> list[str]:
        """The nearest caption of each embedding."""
        return [self.captions[i] for i in self.nearest(embeddings, 1)[:, 0]]
