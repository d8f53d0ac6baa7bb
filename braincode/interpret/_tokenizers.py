"""Tokenizers for the prefix decoder: a word-level tokenizer learnt from captions (offline stand-in for GPT-2's BPE)
and the rebuilding of any fast tokenizer from its JSON (how :class:`~braincode.interpret.clipcap.PrefixDecoder`
keeps its tokenizer in :mod:`braincode.persist`'s config)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "eos_token": "<eos>"}

def word_tokenizer(captions: Sequence[str], *, min_count: int = 1):
    """A word-level tokenizer (lower-case words and punctuation) with ``<pad>``, ``<unk>`` and ``<eos>``,
    learnt from ``captions``: the offline stand-in for GPT-2's BPE when no GPT-2 folder is at hand.

    Examples
    --------
    >>> tok = word_tokenizer(["A face.", "a house"])
    >>> tok.decode(tok("a face")["input_ids"])
    'a face'
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    counts: dict[str, int] = {}
    for caption in captions:
        for word in _TOKEN.findall(str(caption).lower()):
            counts[word] = counts.get(word, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= min_count)
    vocab = {tok: i for i, tok in enumerate([*_SPECIALS.values(), *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=_SPECIALS["unk_token"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return fast_tokenizer(core.to_str(), {**_SPECIALS, "bos_token": _SPECIALS["eos_token"]})


def fast_tokenizer(serialised: str, specials: Mapping[str, str | None]):
    """A transformers fast tokenizer from a serialised ``tokenizers`` JSON and its special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(serialised),
                                   **{k: v for k, v in specials.items() if v is not None})
