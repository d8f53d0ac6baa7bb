"""BrainSCUBA (Luo et al., ICLR 2024): a caption for every voxel, and ROI summaries built from those captions.

1. A linear encoder maps L2-normalised CLIP image embeddings to voxels (:mod:`braincode.interpret.scuba_encoder`:
   the published AdamW recipe by default, ridge as an option).
2. Each voxel's weight vector ``w`` is projected onto a bank of natural-image embeddings ``M_j`` that must not hold
   the subject's own stimuli: ``s = softmax(150 * w_hat . M_hat_j)``; the projection is
   ``normalise(sum_j s_j M_hat_j) * sum_j s_j |M_j|`` (:func:`project`, streamed over the bank; matches the
   authors' ``softmax_convex``), a raw-scale CLIP embedding.
3. ClipCap (:class:`braincode.interpret.clipcap.PrefixDecoder`, published) captions each voxel's projection;
   :class:`braincode.interpret.decoders.RetrievalDecoder` (nearest bank caption) is a baseline, not the method.
4. An ROI is summarised from its voxels' captions (:func:`roi_summaries`): its most frequent caption and nouns.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from braincode.data.rois import Roi, select_rois
from braincode.errors import ConfigError, DataFormatError
from braincode.interpret.bank import EmbeddingBank
from braincode.interpret.scuba_encoder import LinearEncoder, fit_encoder, load_encoder, unit_rows

#: The encoder's names are re-exported: callers (the pipeline, TorchEncoder's tests) import them from here.
__all__ = ["LinearEncoder", "caption_rois", "caption_voxels", "fit_encoder", "load_encoder", "project",
           "roi_summaries", "summarise"]

log = logging.getLogger(__name__)

#: Softmax temperature of the published projection.
TEMPERATURE = 150.0
#: Default size of one chunk of bank rows read at a time.
_KEY_CHUNK_BYTES = 64 * 2**20


class _UnitAndNorm:
    """Row-sliceable ``[unit | norm]`` (n, D + 1) of a bank, read one chunk at a time; the memory-mapped pages of
    each chunk are handed back to the OS once copied, so the resident set stays bounded on any bank size."""

    def __init__(self, bank: EmbeddingBank) -> None:
        self.bank = bank
        self.shape = (len(bank), bank.dim + 1)

    def __getitem__(self, rows: slice) -> np.ndarray:
        from braincode.kernels.streaming import release_rows

        start, stop, _ = rows.indices(self.shape[0])
        out = np.empty((stop - start, self.shape[1]), dtype=np.float32)
        out[:, :-1] = self.bank.unit[start:stop]
        out[:, -1] = self.bank.norms[start:stop]
        for array in (self.bank.unit, self.bank.norms):
            release_rows(array, start, stop)
        return out


def project(
    weights: np.ndarray,
    bank: EmbeddingBank,
    *,
    temperature: float = TEMPERATURE,
    key_chunk: int | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Project voxel weight vectors onto the bank (BrainSCUBA's softmax projection), streaming over the bank.

    Parameters
    ----------
    weights : ndarray of shape (n_voxels, D)
        Encoder weights in the bank's embedding space (one row per voxel).
    bank : EmbeddingBank
        Unit embeddings and norms; may be memory-mapped: only ``key_chunk`` rows are read at a time.
    temperature : float
        Softmax temperature (150 in BrainSCUBA).
    key_chunk : int, optional
        Bank rows per step; memory is O(n_voxels * key_chunk + key_chunk * D) whatever the bank size (default:
        64 MiB of bank rows, fewer when the score tile would pass 256 MiB).
    device : {"auto", "cpu", "cuda"}

    Returns
    -------
    ndarray of shape (n_voxels, D), float32
        ``normalise(sum_j s_j M_hat_j) * sum_j s_j |M_j|`` per voxel.

    Examples
    --------
    >>> import numpy as np
    >>> from braincode.interpret.bank import bank_from_arrays
    >>> bank = bank_from_arrays(["a", "b"], np.array([[2.0, 0.0], [0.0, 1.0]]))
    >>> project(np.array([[1.0, 0.0]]), bank).round(3).tolist()
    [[2.0, 0.0]]
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] != bank.dim:
        raise DataFormatError("voxel weights do not live in the bank's embedding space",
                              expected=f"(n_voxels, {bank.dim}) for bank {bank.model_id or '(unnamed)'}",
                              found=str(w.shape), fix="fit the encoder on embeddings of the bank's model and layer")
    if not temperature > 0:
        raise ConfigError("the softmax temperature must be positive", found=repr(temperature), fix="e.g. 150")
    from braincode.devices import resolve_device
    from braincode.kernels import softmax_project
    from braincode.kernels.streaming import default_key_chunk

    # One read of the bank per chunk: keys [M_hat | |M|] scored by [w_hat | 0] give the softmax over w_hat . M_hat
    # and, as their own values, both the mean unit embedding and the mean norm.
    queries = torch.from_numpy(np.pad(unit_rows(w), ((0, 0), (0, 1)))).to(resolve_device(device))
    if key_chunk is None:
        key_chunk = max(1024, min(default_key_chunk(len(w)), _KEY_CHUNK_BYTES // (4 * (bank.dim + 1))))
    out = softmax_project(queries, _UnitAndNorm(bank), temperature=temperature, key_chunk=key_chunk)
    out = out.double().cpu().numpy()
    direction, norm = out[:, :-1], out[:, -1:]
    return (direction / np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12) * norm).astype(np.float32)


def caption_voxels(projections: np.ndarray, decoder) -> list[str]:
    """Decode each voxel's projection (n_voxels, D) with ``decoder`` (any :class:`CaptionDecoder`).

    Examples
    --------
    >>> import numpy as np
    >>> from braincode.interpret.decoders import RetrievalDecoder
    >>> caption_voxels(np.array([[0.1, 2.0]]), RetrievalDecoder(["a face", "a house"], np.eye(2)))
    ['a house']
    """
    return decoder.decode(np.asarray(projections, dtype=np.float32))


#: Words that are never an ROI's summary noun.
_STOPWORDS = frozenset(re.findall(r"\w+", """a an the of on in at with and or to from by for near next over under
    above below behind beside between into onto is are was were be it its this that there here some two three
    several many very large small big little left right top bottom centre center middle photo picture image
    background front side""", flags=re.ASCII))
_WORD = re.compile(r"[a-z]+")


def summarise(captions: Sequence[str], *, n_words: int = 5) -> dict:
    """Summary of a set of voxel captions: the most frequent caption, its share, and the most frequent words.

    Examples
    --------
    >>> summarise(["a face.", "a smiling face", "a face."], n_words=2)
    {'caption': 'a face.', 'caption_share': 0.667, 'top_words': 'face (3); smiling (1)'}
    """
    captions = [str(c) for c in captions]
    if not captions:
        return {"caption": "", "caption_share": 0.0, "top_words": ""}
    best, count = Counter(captions).most_common(1)[0]
    words = Counter(w for c in captions for w in set(_WORD.findall(c.lower())) if w not in _STOPWORDS)
    ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:n_words]
    return {"caption": best, "caption_share": round(count / len(captions), 3),
            "top_words": "; ".join(f"{w} ({c})" for w, c in ranked)}


def roi_summaries(voxel_captions: Sequence[str], units: Sequence[Roi], *, n_words: int = 5) -> pd.DataFrame:
    """One row per ROI (:func:`braincode.data.rois.select_rois`), built from its voxels' captions (:func:`summarise`).

    Returns
    -------
    DataFrame
        ``family``, ``roi``, ``voxels`` (count), ``caption`` (the ROI's most frequent voxel caption),
        ``caption_share``, ``top_words``.

    Examples
    --------
    >>> v = pd.DataFrame({"roi:floc-faces": ["FFA-1", "FFA-1", "OFA"]})
    >>> roi_summaries(["a face", "a face", "a house"], select_rois(v, "floc-faces"))["caption"].tolist()
    ['a face', 'a house']
    """
    captions = np.asarray([str(c) for c in voxel_captions], dtype=object)
    rows = [{"family": u.family, "roi": u.name, "voxels": int(u.mask.sum()),
             **summarise(captions[u.mask].tolist(), n_words=n_words)} for u in units]
    return pd.DataFrame(rows)


def caption_rois(
    projections: np.ndarray,
    voxels: pd.DataFrame,
    family: str,
    decoder,
    *,
    rois: Sequence[str] | None = None,
) -> pd.DataFrame:
    """BrainSCUBA for the ROIs of ``family`` (or ``rois``): caption each of their voxels' projections, then
    summarise each ROI from its voxels' captions (:func:`roi_summaries`).

    Examples
    --------
    >>> from braincode.interpret.decoders import RetrievalDecoder
    >>> vox = pd.DataFrame({"roi:floc-faces": ["FFA-1", "FFA-1", "OFA"]})
    >>> proj = np.array([[1.0, 0.0], [0.6, 0.5], [0.0, 1.0]])
    >>> caption_rois(proj, vox, "floc-faces", RetrievalDecoder(["a face", "a house"], np.eye(2)))["caption"].tolist()
    ['a face', 'a house']
    """
    units = select_rois(voxels, [f"{family}:{r}" for r in rois] if rois is not None else family)
    needed = np.any([u.mask for u in units], axis=0)
    captions = np.full(len(voxels), "", dtype=object)
    captions[needed] = caption_voxels(np.asarray(projections)[needed], decoder)
    return roi_summaries(captions.tolist(), units)
