"""LaVCa (Matsuyama et al., ICLR 2026): a sentence per voxel (or ROI) from the images it is predicted to prefer.

For each voxel with encoder weights ``w`` (on L2-normalised CLIP embeddings):

1. the top-N bank images by predicted activation ``w . M_hat_j`` (:func:`top_images`, streaming);
2. a caption of each by a multimodal model (published; :class:`~braincode.interpret.lavca_components.
   HFImageCaptioner`, any local transformers image-to-text model);
3. keywords of those captions by an LLM and a prompt (published; :class:`~braincode.interpret.lavca_components.
   LMKeywords`, any local causal LM);
4. keywords filtered by the CLIP-text cosine to ``w`` with a softmax threshold, at most 5 (:func:`filter_keywords`);
5. one sentence from the kept keywords, chosen by its text embedding's cosine to ``w`` (published;
   :class:`~braincode.interpret.lavca_components.WeightGuidedComposer`).

:func:`components` builds either that pipeline from local model folders or the explicit simplified mode (the bank's
own captions, noun-phrase keywords, a template sentence, a plain cosine ranking); :func:`describe` records in its
output which components made it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from braincode.errors import ConfigError, DataFormatError
from braincode.interpret.bank import EmbeddingBank
from braincode.interpret.lavca_components import (
    BankCaptions,
    Captioner,
    Composer,
    HFImageCaptioner,
    KeywordExtractor,
    LMKeywords,
    LocalLM,
    NounPhraseKeywords,
    TemplateComposer,
    TextEncoder,
    WeightGuidedComposer,
)
from braincode.interpret.scuba_encoder import unit_rows

log = logging.getLogger(__name__)

#: LaVCa's keyword filter: softmax over CLIP logits (cosine x 100) of a voxel's candidates, kept at >= 0.05.
FILTER_TEMPERATURE, FILTER_THRESHOLD = 100.0, 0.05


@dataclass(frozen=True)
class Components:
    """The parts of a LaVCa run and a description of each (recorded with every output).

    ``threshold`` None ranks keywords by cosine only (simplified); ``encode_text`` None keeps the extractor's order.
    """

    captioner: Captioner
    extractor: KeywordExtractor
    composer: Composer
    encode_text: TextEncoder | None
    threshold: float | None
    described: dict


def components(
    bank: EmbeddingBank,
    *,
    captioner: str | Path | None = None,
    lm: str | Path | None = None,
    simplified: bool = False,
    threshold: float = FILTER_THRESHOLD,
    device: str = "auto",
) -> Components:
    """LaVCa's components: the published pipeline from local model folders, or the explicit simplified mode.

    Parameters
    ----------
    bank : EmbeddingBank
        Its ``text_encoder()`` (e.g. the CLIP text tower of a CLIP image bank) filters keywords and guides the
        sentence.
    captioner, lm : path
        Local transformers image-to-text model and causal LM folders (both needed unless ``simplified``).
    simplified : bool
        The bank's captions, noun-phrase keywords, a template sentence, cosine ranking without the threshold.

    Examples
    --------
    >>> from braincode.interpret.bank import bank_from_arrays
    >>> bank = bank_from_arrays(["a"], np.eye(1), captions=["a face"])
    >>> components(bank, simplified=True).described["mode"]
    'simplified'
    """
    encode = bank.text_encoder()
    if simplified:
        return Components(BankCaptions(), NounPhraseKeywords(reference=bank.captions), TemplateComposer(), encode, None,
                          {"mode": "simplified", "captioner": "the bank's stored captions",
                           "keywords": "noun-phrase heads ranked against the bank's rates",
                           "filter": "cosine to the voxel weight (no softmax threshold)" if encode else "none",
                           "composer": "template 'a photo of ...'"})
    if captioner is None or lm is None or encode is None:
        raise ConfigError("LaVCa as published needs a multimodal captioner, an LLM and a text encoder in the "
                          "weights' space",
                          expected="captioner and lm model folders, and a CLIP image bank (open_clip:..., pooled)",
                          found=f"captioner={captioner}, lm={lm}, bank text encoder: {'yes' if encode else 'none'}",
                          fix="pass --captioner and --lm (local transformers folders) with a CLIP bank, or "
                              "--simplified")
    language = LocalLM(lm, device=device)
    return Components(HFImageCaptioner(captioner, device=device), LMKeywords(language),
                      WeightGuidedComposer(language, encode), encode, threshold,
                      {"mode": "published", "captioner": f"image-to-text model {captioner}",
                       "keywords": f"causal LM {lm} with a keyword prompt",
                       "filter": f"softmax({FILTER_TEMPERATURE:g} x CLIP-text cosine) >= {threshold:g}",
                       "composer": f"causal LM {lm} candidates, the nearest to the voxel weight in {bank.model_id}"})


# ------------------------------------------------------------------------------------------ the method


def top_images(weights: np.ndarray, bank: EmbeddingBank, n_top: int, *, key_chunk: int | None = None,
               device: str = "auto") -> np.ndarray:
    """Indices (n_voxels, n_top) of each voxel's bank images with the highest predicted activation, best first.

    The encoder reads normalised embeddings, so the ranking is that of ``w . M_hat_j`` (the intercept is shared).
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] != bank.dim:
        raise DataFormatError("voxel weights do not live in the bank's embedding space",
                              expected=f"(n_voxels, {bank.dim})", found=str(w.shape),
                              fix="fit the encoder on embeddings of the bank's model and layer")
    if not 1 <= n_top <= len(bank):
        raise ConfigError("n_top is out of range", expected=f"1 <= n_top <= {len(bank)} (bank size)",
                          found=str(n_top))
    from braincode.devices import resolve_device
    from braincode.kernels import topk

    _, index = topk(torch.from_numpy(w).to(resolve_device(device)), bank.unit, n_top, key_chunk=key_chunk)
    return np.asarray(torch.as_tensor(index).cpu())


def filter_keywords(
    keywords: Sequence[Sequence[str]],
    weights: np.ndarray,
    encode_text: TextEncoder | None,
    n_keep: int,
    *,
    threshold: float | None = None,
    temperature: float = 100.0,
) -> list[list[str]]:
    """Per voxel, at most ``n_keep`` candidate keywords ranked by the cosine of their text embedding to the voxel's
    weight vector; each keyword is embedded once for all voxels.

    With ``threshold`` (LaVCa's filter), only keywords whose ``softmax(temperature * cosine)`` over the voxel's
    candidates reaches it are kept (always at least the best one). Without ``encode_text`` the given order is kept
    (simplified mode only).

    Examples
    --------
    >>> import numpy as np
    >>> enc = lambda words: np.array([[1.0, 0.0] if w == "face" else [0.0, 1.0] for w in words])
    >>> filter_keywords([["house", "face"], ["house", "face"]], np.array([[1.0, 0.1], [0.0, 1.0]]), enc, 1)
    [['face'], ['house']]
    >>> filter_keywords([["house", "face"]], np.array([[1.0, 0.9]]), enc, 5, threshold=0.2, temperature=10)
    [['face', 'house']]
    >>> filter_keywords([["house", "face"]], np.array([[1.0, 0.5]]), enc, 5, threshold=0.2, temperature=10)
    [['face']]
    """
    if encode_text is None:
        return [list(k[:n_keep]) for k in keywords]
    vocab = sorted({k for ks in keywords for k in ks})
    if not vocab:
        return [[] for _ in keywords]
    emb = np.asarray(encode_text(vocab), dtype=np.float32)
    if emb.shape != (len(vocab), np.shape(weights)[1]):
        raise DataFormatError("the text encoder does not embed into the weights' space",
                              expected=f"(n_words, {np.shape(weights)[1]})", found=str(emb.shape),
                              fix="use the text tower of the bank's model (e.g. CLIP text for a CLIP bank)")
    emb = unit_rows(emb)
    position = {k: i for i, k in enumerate(vocab)}
    kept = []
    for ks, w in zip(keywords, np.asarray(weights, dtype=np.float32)):
        if not ks:
            kept.append([])
            continue
        cos = emb[[position[k] for k in ks]] @ (w / max(float(np.linalg.norm(w)), 1e-12))
        order = np.argsort(-cos, kind="stable")[:n_keep]
        if threshold is not None:
            prob = np.exp(temperature * (cos - cos.max()))
            prob /= prob.sum()
            order = [i for j, i in enumerate(order) if j == 0 or prob[i] >= threshold]
        kept.append([ks[i] for i in order])
    return kept


def describe(
    weights: np.ndarray,
    bank: EmbeddingBank,
    *,
    parts: Components | None = None,
    n_top: int = 50,
    n_keywords: int = 5,
    key_chunk: int | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """LaVCa descriptions of voxels (rows of ``weights``; pass ROI-mean weights for ROI descriptions).

    Parameters
    ----------
    weights : ndarray of shape (n_voxels, D)
        Encoder weights on normalised bank embeddings.
    bank : EmbeddingBank
    parts : Components, optional
        From :func:`components`; default: the simplified mode (recorded as such).
    n_top : int
        Top bank images per voxel.
    n_keywords : int
        Keywords kept for the sentence (5 in LaVCa).

    Returns
    -------
    DataFrame
        One row per voxel: ``caption``, ``keywords`` (";"-joined), ``top_images`` (";"-joined bank ids) and
        ``mode``; ``attrs["components"]`` describes every component.

    Examples
    --------
    >>> from braincode.interpret.bank import bank_from_arrays
    >>> bank = bank_from_arrays(list("abc"), np.eye(3), captions=["a face", "a smiling face", "a house"])
    >>> out = describe(np.array([[1.0, 1.0, 0.0]]), bank, n_top=2)
    >>> out["caption"].tolist(), out.attrs["components"]["mode"]
    (['a photo of a face'], 'simplified')
    """
    parts = parts if parts is not None else components(bank, simplified=True)
    top = top_images(weights, bank, n_top, key_chunk=key_chunk, device=device)
    candidates = [parts.extractor.keywords(parts.captioner.caption(bank, row)) for row in top]
    kept = filter_keywords(candidates, weights, parts.encode_text, n_keywords, threshold=parts.threshold,
                           temperature=FILTER_TEMPERATURE)
    table = pd.DataFrame({
        "caption": [parts.composer.compose(k, w) for k, w in zip(kept, np.asarray(weights, np.float32))],
        "keywords": [";".join(k) for k in kept],
        "top_images": [";".join(bank.ids[int(i)] for i in row) for row in top],
        "mode": parts.described["mode"],
    })
    table.attrs["components"] = dict(parts.described)
    return table
