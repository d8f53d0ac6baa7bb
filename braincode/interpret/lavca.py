"""LaVCa: a sentence per voxel (or ROI) from the captions of the bank images it is predicted to prefer.

For each voxel with encoder weights ``w`` (on normalised embeddings):

1. the top-N bank images by predicted activation ``w . M_hat_j`` (:func:`braincode.kernels.topk`, streaming);
2. their captions (:class:`Captioner`: the bank's own captions, or a local transformers image-to-text model);
3. candidate keywords from those captions (:class:`KeywordExtractor`: noun-phrase frequency, or a local LM);
4. keywords kept by the cosine of their text embedding to ``w`` (the "CLIP filter"; needs a text encoder in the
   bank's embedding space);
5. one sentence composed from the kept keywords (:class:`Composer`: a template, or a local LM).

Everything runs offline with the deterministic implementations (the defaults).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from braincode.errors import ConfigError, DataFormatError, ModelError
from braincode.interpret.bank import EmbeddingBank

log = logging.getLogger(__name__)

TextEncoder = Callable[[Sequence[str]], np.ndarray]

_WORD = re.compile(r"[a-z]+")
#: Words that open a noun phrase.
_DETERMINERS = frozenset(re.findall(r"\w+", "a an the some two three several many this that these those their his her"))
#: Words that end one (prepositions, conjunctions, verbs of captions).
_BREAKS = frozenset(re.findall(r"\w+", """on in at of with and or but to from by for near next over under above below
    behind beside between into onto is are was were be being been has have having it there here while which who
    that as its very"""))
#: Head words that are never keywords.
_NON_KEYWORDS = frozenset(re.findall(r"\w+", "image photo picture photograph view nothing something thing things"))


# ------------------------------------------------------------------------------------------ interfaces


@runtime_checkable
class Captioner(Protocol):
    """Captions of bank images: ``caption(bank, index) -> list of len(index) str``."""

    def caption(self, bank: EmbeddingBank, index: Sequence[int]) -> list[str]: ...


@runtime_checkable
class KeywordExtractor(Protocol):
    """Candidate keywords of a set of captions, most salient first: ``keywords(captions) -> list of str``."""

    def keywords(self, captions: Sequence[str]) -> list[str]: ...


@runtime_checkable
class Composer(Protocol):
    """One sentence from keywords, most important first: ``compose(keywords) -> str``."""

    def compose(self, keywords: Sequence[str]) -> str: ...


# --------------------------------------------------------------------------------------- deterministic


class BankCaptions:
    """The captions stored with the bank (e.g. COCO captions, or ``captions.csv`` of an image folder)."""

    def caption(self, bank: EmbeddingBank, index: Sequence[int]) -> list[str]:
        if bank.captions is None:
            raise DataFormatError("the bank has no captions", expected="a bank built from a folder with captions.csv",
                                  fix="rebuild the bank with captions, or use an image captioner (HFImageCaptioner)")
        return [bank.captions[int(i)] for i in index]


def noun_phrases(caption: str) -> list[str]:
    """Noun phrases of a caption by a determiner-to-break heuristic (no tagger): words after a determiner up to
    a preposition, conjunction or punctuation, without the determiner.

    Examples
    --------
    >>> noun_phrases("A large face on the left and a house at the top, on a bluish background")
    ['large face', 'left', 'house', 'top', 'bluish background']
    """
    phrases, current, inside = [], [], False
    for token in re.findall(r"[a-z]+|[^\sa-z]", caption.lower()):
        if token in _DETERMINERS:
            if current:
                phrases.append(" ".join(current))
            current, inside = [], True
        elif not _WORD.fullmatch(token) or token in _BREAKS:
            if current:
                phrases.append(" ".join(current))
            current, inside = [], False
        elif inside:
            current.append(token)
    if current:
        phrases.append(" ".join(current))
    return phrases


class NounPhraseKeywords:
    """Keywords = head nouns (last word) of the captions' noun phrases, ranked by how many captions contain them.

    With a ``reference`` corpus (e.g. every caption of the bank) the rank is by the excess over the count expected
    from the reference rate, so words that every image has ("background") give way to those that set the voxel's
    images apart.

    Parameters
    ----------
    max_keywords : int
        Candidates returned (the CLIP filter then keeps the best of these).
    stopwords : sequence of str
        Head words never used (position words of captions, e.g. "left", "top").
    reference : sequence of str, optional
        Captions whose head-noun rates are the baseline.

    Examples
    --------
    >>> NounPhraseKeywords().keywords(["a face on the left", "a smiling face", "a house"])
    ['face', 'house']
    >>> ref = ["a face on a grey background", "a house on a red background", "a dog on a grey background"]
    >>> NounPhraseKeywords(reference=ref).keywords(["a face on a red background", "a face on a grey background"])
    ['face', 'background']
    """

    def __init__(self, max_keywords: int = 20, stopwords: Sequence[str] = ("left", "right", "top", "bottom", "centre",
                                                                           "center", "middle"),
                 reference: Sequence[str] | None = None) -> None:
        self.max_keywords = max_keywords
        self.stopwords = frozenset(stopwords) | _NON_KEYWORDS
        self.rates: dict[str, float] | None = None
        if reference is not None:
            counts = self._counts(reference)
            self.rates = {word: c / max(len(reference), 1) for word, c in counts.items()}

    def _counts(self, captions: Sequence[str]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for caption in captions:
            heads = {p.split()[-1] for p in noun_phrases(str(caption))}
            counts.update(h for h in heads if h not in self.stopwords and len(h) > 1)
        return counts

    def keywords(self, captions: Sequence[str]) -> list[str]:
        counts = self._counts(captions)
        rates = self.rates or {}
        score = {w: c - len(captions) * rates.get(w, 0.0) for w, c in counts.items()}
        ranked = sorted(counts, key=lambda w: (-score[w], -counts[w], w))
        return ranked[: self.max_keywords]


class TemplateComposer:
    """``template`` filled with the keywords as "a k1, a k2 and a k3".

    Examples
    --------
    >>> TemplateComposer().compose(["face", "eye", "person"])
    'a photo of a face, an eye and a person'
    """

    def __init__(self, template: str = "a photo of {}") -> None:
        self.template = template

    def compose(self, keywords: Sequence[str]) -> str:
        if not keywords:
            return self.template.format("something")
        items = [f"{'an' if k[:1] in 'aeiou' else 'a'} {k}" for k in keywords]
        listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        return self.template.format(listed)


# --------------------------------------------------------------------------------------- local models


class LocalLM:
    """A local transformers causal language model (any folder ``AutoModelForCausalLM`` reads), greedy decoding.

    Parameters
    ----------
    path : str or Path
        Model folder with its tokenizer.
    max_new_tokens : int
        Longest answer.
    device : {"auto", "cpu", "cuda"}
    """

    def __init__(self, path: str | Path, *, max_new_tokens: int = 48, device: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from braincode.devices import resolve_device

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelError("not a transformers model folder", path=path, expected="config.json, weights, tokenizer",
                             fix="save the model with save_pretrained (and its tokenizer) into that folder")
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def generate(self, prompt: str) -> str:
        """The model's greedy continuation of ``prompt`` (prompt not included)."""
        batch = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        ids = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        return self.tokenizer.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()


class LMKeywords:
    """Keywords by a local LM asked for the main objects of the captions, parsed from a comma-separated answer."""

    prompt = ("Here are descriptions of images:\n{captions}\nList the main objects and concepts they share, as "
              "single words separated by commas.\nKeywords:")

    def __init__(self, lm: LocalLM, max_keywords: int = 20, max_captions: int = 20) -> None:
        self.lm, self.max_keywords, self.max_captions = lm, max_keywords, max_captions

    def keywords(self, captions: Sequence[str]) -> list[str]:
        answer = self.lm.generate(self.prompt.format(captions="\n".join(f"- {c}" for c in captions[: self.max_captions])))
        words = [w.strip(" .\"'").lower() for w in re.split(r"[,\n;]", answer)]
        return list(dict.fromkeys(w for w in words if w))[: self.max_keywords]


class LMComposer:
    """One sentence by a local LM from the keywords; the first line of its answer."""

    prompt = "Write one short sentence describing an image that contains: {keywords}.\nSentence:"

    def __init__(self, lm: LocalLM) -> None:
        self.lm = lm

    def compose(self, keywords: Sequence[str]) -> str:
        answer = self.lm.generate(self.prompt.format(keywords=", ".join(keywords)))
        return (answer.splitlines() or [""])[0].strip()


class HFImageCaptioner:
    """Captions from a local transformers image-to-text model (BLIP, GIT, VisionEncoderDecoder, ...): its image
    processor and tokenizer, unconditional generation from the pixels, greedy decoding. Captions are cached by
    bank id (a voxel's top images overlap with its neighbours').

    Parameters
    ----------
    path : str or Path
        Model folder with the image processor, the tokenizer and the weights (``save_pretrained``).
    max_new_tokens, batch_size : int
    device : {"auto", "cpu", "cuda"}
    """

    def __init__(self, path: str | Path, *, max_new_tokens: int = 30, batch_size: int = 8,
                 device: str = "auto") -> None:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        from braincode.devices import resolve_device

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelError("not a transformers image-to-text model folder", path=path,
                             expected="config.json, weights, image processor and tokenizer files",
                             fix="save the model, its image processor and tokenizer with save_pretrained there")
        self.device = resolve_device(device)
        self.image_processor = AutoImageProcessor.from_pretrained(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForImageTextToText.from_pretrained(path).to(self.device).eval()
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self._cache: dict[str, str] = {}

    @torch.no_grad()
    def caption(self, bank: EmbeddingBank, index: Sequence[int]) -> list[str]:
        stimuli = bank.stimuli()
        todo = [i for i in dict.fromkeys(int(i) for i in index) if bank.ids[i] not in self._cache]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            pixels = self.image_processor(images=[stimuli.image(i) for i in chunk], return_tensors="pt")
            ids = self.model.generate(pixel_values=pixels["pixel_values"].to(self.device),
                                      max_new_tokens=self.max_new_tokens, do_sample=False)
            for i, text in zip(chunk, self.tokenizer.batch_decode(ids, skip_special_tokens=True)):
                self._cache[bank.ids[i]] = text.strip()
        return [self._cache[bank.ids[int(i)]] for i in index]


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
) -> list[list[str]]:
    """Per voxel, the ``n_keep`` candidate keywords whose text embedding has the highest cosine to its weight
    vector (order kept as given when ``encode_text`` is None). Each keyword is embedded once for all voxels.

    Examples
    --------
    >>> import numpy as np
    >>> enc = lambda words: np.array([[1.0, 0.0] if w == "face" else [0.0, 1.0] for w in words])
    >>> filter_keywords([["house", "face"], ["house", "face"]], np.array([[1.0, 0.1], [0.0, 1.0]]), enc, 1)
    [['face'], ['house']]
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
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    position = {k: i for i, k in enumerate(vocab)}
    kept = []
    for ks, w in zip(keywords, np.asarray(weights, dtype=np.float32)):
        cos = emb[[position[k] for k in ks]] @ (w / max(float(np.linalg.norm(w)), 1e-12))
        kept.append([ks[i] for i in np.argsort(-cos, kind="stable")[:n_keep]])
    return kept


def describe(
    weights: np.ndarray,
    bank: EmbeddingBank,
    *,
    encode_text: TextEncoder | None = None,
    n_top: int = 50,
    n_keywords: int = 5,
    captioner: Captioner | None = None,
    extractor: KeywordExtractor | None = None,
    composer: Composer | None = None,
    key_chunk: int | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """LaVCa descriptions of voxels (rows of ``weights``; pass ROI-mean weights for ROI descriptions).

    Parameters
    ----------
    weights : ndarray of shape (n_voxels, D)
        Encoder weights on normalised bank embeddings.
    bank : EmbeddingBank
    encode_text : callable, optional
        Texts -> (n, D) embeddings in the bank's space, for the keyword filter; ``None`` keeps the extractor's
        order.
    n_top : int
        Top bank images per voxel.
    n_keywords : int
        Keywords kept for the sentence.
    captioner, extractor, composer
        Default :class:`BankCaptions`, :class:`NounPhraseKeywords` (with the bank's captions as reference when it
        has them and the captioner is :class:`BankCaptions`), :class:`TemplateComposer`.

    Returns
    -------
    DataFrame
        One row per voxel: ``caption``, ``keywords`` (";"-joined), ``top_images`` (";"-joined bank ids).

    Examples
    --------
    >>> import numpy as np
    >>> from braincode.interpret.bank import bank_from_arrays
    >>> bank = bank_from_arrays(list("abc"), np.eye(3), captions=["a face", "a smiling face", "a house"])
    >>> describe(np.array([[1.0, 1.0, 0.0]]), bank, n_top=2)["caption"].tolist()
    ['a photo of a face']
    """
    captioner = captioner or BankCaptions()
    if extractor is None:
        use_bank = isinstance(captioner, BankCaptions) and bank.captions is not None
        extractor = NounPhraseKeywords(reference=bank.captions if use_bank else None)
    composer = composer or TemplateComposer()
    top = top_images(weights, bank, n_top, key_chunk=key_chunk, device=device)
    candidates = [extractor.keywords(captioner.caption(bank, row)) for row in top]
    kept = filter_keywords(candidates, weights, encode_text, n_keywords)
    return pd.DataFrame({
        "caption": [composer.compose(k) for k in kept],
        "keywords": [";".join(k) for k in kept],
        "top_images": [";".join(bank.ids[int(i)] for i in row) for row in top],
    })
