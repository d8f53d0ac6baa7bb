"""LaVCa's components, behind three small interfaces: who captions the top images, who finds keywords in those
captions, who composes the sentence.

Published pipeline, with local models (:func:`braincode.interpret.lavca.components`): :class:`HFImageCaptioner` (any
local transformers image-to-text model), :class:`LMKeywords` (any local causal LM and a prompt) and
:class:`WeightGuidedComposer` (the LM proposes sentences; the one whose text embedding is nearest the voxel's weight
vector wins). Simplified mode (explicit, recorded as such): :class:`BankCaptions`, :class:`NounPhraseKeywords`,
:class:`TemplateComposer`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from braincode.errors import DataFormatError, ModelError
from braincode.interpret.bank import EmbeddingBank
from braincode.interpret.scuba_encoder import unit_rows

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
    """One sentence from keywords (most important first) for a voxel: ``compose(keywords, weight) -> str``."""

    def compose(self, keywords: Sequence[str], weight: np.ndarray | None = None) -> str: ...


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

    def compose(self, keywords: Sequence[str], weight: np.ndarray | None = None) -> str:
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
    def generate(self, prompt: str, n: int = 1) -> str | list[str]:
        """The model's greedy continuation of ``prompt`` (prompt not included); with ``n > 1``, the ``n`` best
        beam-search continuations. A prompt longer than the model's context keeps its end."""
        batch = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        context = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None)
        if context and batch["input_ids"].shape[1] + self.max_new_tokens > context:
            keep = max(context - self.max_new_tokens, 1)
            log.warning("prompt of %d tokens cut to its last %d (context %d)", batch["input_ids"].shape[1], keep,
                        context)
            batch = {k: v[:, -keep:] for k, v in batch.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        ids = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad,
                                  num_beams=n, num_return_sequences=n)
        texts = [t.strip() for t in self.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:],
                                                                skip_special_tokens=True)]
        return texts[0] if n == 1 else texts


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
    """One sentence by a local LM from the keywords; the first line of its answer (the voxel is not consulted)."""

    prompt = "Write one short sentence describing an image that contains: {keywords}.\nSentence:"

    def __init__(self, lm: LocalLM) -> None:
        self.lm = lm

    def compose(self, keywords: Sequence[str], weight: np.ndarray | None = None) -> str:
        answer = self.lm.generate(self.prompt.format(keywords=", ".join(keywords)))
        return (answer.splitlines() or [""])[0].strip()


class WeightGuidedComposer(LMComposer):
    """LaVCa's sentence step guided by the voxel: the LM proposes ``n_candidates`` sentences from the keywords (beam
    search) and the one whose text embedding (``encode_text``, in the weights' space, e.g. CLIP text) has the
    highest cosine with the voxel's weight vector is kept.

    Examples
    --------
    >>> class Echo:
    ...     def generate(self, prompt, n=1): return ["a house", "a face"][:n]
    >>> enc = lambda texts: np.array([[1.0, 0.0] if "face" in t else [0.0, 1.0] for t in texts])
    >>> WeightGuidedComposer(Echo(), enc, n_candidates=2).compose(["face"], np.array([1.0, 0.2]))
    'a face'
    """

    def __init__(self, lm: LocalLM, encode_text: TextEncoder, n_candidates: int = 5) -> None:
        super().__init__(lm)
        self.encode_text, self.n_candidates = encode_text, n_candidates

    def compose(self, keywords: Sequence[str], weight: np.ndarray | None = None) -> str:
        answers = self.lm.generate(self.prompt.format(keywords=", ".join(keywords)), n=self.n_candidates)
        candidates = list(dict.fromkeys((a.splitlines() or [""])[0].strip() for a in answers)) or [""]
        if weight is None or len(candidates) == 1:
            return candidates[0]
        emb = np.asarray(self.encode_text(candidates), dtype=np.float32)
        emb = unit_rows(emb)
        return candidates[int(np.argmax(emb @ np.asarray(weight, np.float32)))]


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


