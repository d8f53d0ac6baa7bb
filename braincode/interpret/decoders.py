"""Caption decoders: turn embeddings (n, D) into sentences, behind one interface.

* :class:`RetrievalDecoder` — the caption whose key (e.g. the CLIP text embedding of a bank caption, or the image
  embedding of a captioned bank image) is nearest in cosine to the embedding.
* :class:`PrefixDecoder` — ClipCap: an MLP maps the embedding to a prefix of ``prefix_length`` token embeddings
  that a GPT-2 (transformers) continues into a caption, decoded by beam search. Trainable on (embedding, caption)
  pairs (:meth:`PrefixDecoder.fit`, CLI ``braincode train-decoder``); saved as safetensors + JSON config + tokenizer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from braincode.errors import ConfigError, DataFormatError, MissingFileError, ModelError
from braincode.progress import progress

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
        self.keys = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
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


# ---------------------------------------------------------------- ClipCap prefix decoder

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_SPECIALS = {"pad": "<pad>", "unk": "<unk>", "eos": "<eos>"}


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
    from transformers import PreTrainedTokenizerFast

    counts: dict[str, int] = {}
    for caption in captions:
        for word in _TOKEN.findall(str(caption).lower()):
            counts[word] = counts.get(word, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= min_count)
    vocab = {tok: i for i, tok in enumerate([*_SPECIALS.values(), *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=_SPECIALS["unk"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=_SPECIALS["pad"], unk_token=_SPECIALS["unk"],
                                   eos_token=_SPECIALS["eos"], bos_token=_SPECIALS["eos"])


@dataclass(frozen=True)
class PrefixConfig:
    """Shape of a :class:`PrefixDecoder` (saved as ``decoder.json``).

    Parameters
    ----------
    embed_dim : int
        Dimension of the input embeddings (512 for CLIP ViT-B/32).
    prefix_length : int
        Number of prefix token embeddings (10 in ClipCap / BrainSCUBA).
    hidden : int
        Hidden width of the MLP; ClipCap uses ``prefix_length * n_embd // 2`` (3840 for GPT-2 small).
    normalize : bool
        L2-normalise input embeddings first (ClipCap is trained on normalised CLIP embeddings).
    max_new_tokens : int
        Longest caption decoded.
    """

    embed_dim: int
    prefix_length: int = 10
    hidden: int = 0
    normalize: bool = True
    max_new_tokens: int = 40


class PrefixDecoder(nn.Module):
    """ClipCap: MLP(embedding) -> ``prefix_length`` token embeddings -> GPT-2 -> caption by beam search.

    Build with :meth:`tiny` (random GPT-2 and a word tokenizer learnt from captions), :meth:`from_gpt2` (a local
    GPT-2 folder: weights and tokenizer) or :meth:`load` (a folder written by :meth:`save`).

    Examples
    --------
    >>> import numpy as np
    >>> caps = ["a photo of a face", "a photo of a house"] * 8
    >>> emb = np.repeat(np.eye(2, 8, dtype=np.float32), 8, axis=0)[[0, 8] * 8]
    >>> dec = PrefixDecoder.tiny(8, caps, random_state=0)
    >>> losses = dec.fit(emb, caps, epochs=30, lr=3e-3, batch_size=8)
    >>> losses[-1] < losses[0]
    True
    >>> dec.decode(emb[:2], num_beams=3)
    ['a photo of a face', 'a photo of a house']
    """

    def __init__(self, lm, tokenizer, config: PrefixConfig) -> None:
        super().__init__()
        n_embd = lm.config.n_embd
        hidden = config.hidden or max(config.prefix_length * n_embd // 2, 1)
        self.config = PrefixConfig(**{**asdict(config), "hidden": hidden})
        self.lm, self.tokenizer = lm, tokenizer
        self.mlp = nn.Sequential(
            nn.Linear(config.embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, config.prefix_length * n_embd)
        )

    # ---- construction
    @classmethod
    def tiny(
        cls,
        embed_dim: int,
        captions: Sequence[str],
        *,
        prefix_length: int = 10,
        n_layer: int = 2,
        n_embd: int = 64,
        n_head: int = 2,
        random_state: int = 0,
    ) -> PrefixDecoder:
        """A random-weight GPT-2 of the given size with a word tokenizer learnt from ``captions``."""
        from transformers import GPT2Config, GPT2LMHeadModel

        tokenizer = word_tokenizer(captions)
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=prefix_length + 64, n_embd=n_embd,
                            n_layer=n_layer, n_head=n_head, bos_token_id=tokenizer.eos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            return cls(GPT2LMHeadModel(config), tokenizer, PrefixConfig(embed_dim, prefix_length))

    @classmethod
    def from_gpt2(cls, path: str | Path, embed_dim: int, *, prefix_length: int = 10,
                  random_state: int = 0) -> PrefixDecoder:
        """A local GPT-2 folder (``config.json``, weights, tokenizer files) with a fresh, seeded prefix MLP."""
        from transformers import AutoTokenizer, GPT2LMHeadModel

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelError("not a GPT-2 model folder", path=path, expected="config.json and the weights",
                             fix="save one with GPT2LMHeadModel.save_pretrained and the tokenizer beside it")
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            return cls(GPT2LMHeadModel.from_pretrained(path), tokenizer, PrefixConfig(embed_dim, prefix_length))

    # ---- model
    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Prefix token embeddings (n, prefix_length, n_embd) of embeddings (n, embed_dim)."""
        if self.config.normalize:
            embeddings = nn.functional.normalize(embeddings, dim=-1)
        return self.mlp(embeddings).view(len(embeddings), self.config.prefix_length, -1)

    def loss(self, embeddings: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """Mean next-token cross-entropy of ``captions`` (each ended by EOS) given the embeddings' prefixes."""
        device = embeddings.device
        batch = self.tokenizer([f"{c}{self.tokenizer.eos_token}" for c in captions], return_tensors="pt",
                               padding=True, add_special_tokens=False)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        prefix = self.prefix(embeddings)
        inputs = torch.cat([prefix, self.lm.get_input_embeddings()(ids)], dim=1)
        ones = torch.ones(prefix.shape[:2], dtype=mask.dtype, device=device)
        labels = torch.cat([torch.full(prefix.shape[:2], -100, device=device), ids.masked_fill(mask == 0, -100)], 1)
        return self.lm(inputs_embeds=inputs, attention_mask=torch.cat([ones, mask], 1), labels=labels).loss

    def fit(
        self,
        embeddings: np.ndarray,
        captions: Sequence[str],
        *,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 2e-5,
        weight_decay: float = 0.0,
        train_lm: bool = True,
        random_state: int = 0,
        device: str = "auto",
        progress_bar: bool = True,
    ) -> list[float]:
        """Train on (embedding, caption) pairs with AdamW; returns the mean loss of each epoch.

        ``train_lm=False`` freezes GPT-2 and trains only the prefix MLP (ClipCap's "frozen LM" variant).
        """
        from braincode.devices import resolve_device

        x = _as_matrix(embeddings, self.config.embed_dim, "PrefixDecoder.fit")
        if len(x) != len(captions) or len(x) == 0:
            raise DataFormatError("PrefixDecoder.fit needs one caption per embedding",
                                  expected=f"{len(x)} captions", found=str(len(captions)))
        if epochs < 1 or batch_size < 1 or lr <= 0:
            raise ConfigError("epochs, batch_size and lr must be positive",
                              found=f"epochs={epochs}, batch_size={batch_size}, lr={lr}")
        dev = resolve_device(device)
        self.to(dev).train()
        self.lm.requires_grad_(train_lm)
        params = [p for p in self.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        rng = np.random.default_rng(random_state)
        history = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            for _ in progress(range(epochs), desc="prefix decoder", enabled=progress_bar):
                total, order = 0.0, rng.permutation(len(x))
                for start in range(0, len(x), batch_size):
                    idx = order[start:start + batch_size]
                    loss = self.loss(torch.from_numpy(x[idx]).to(dev), [captions[i] for i in idx])
                    optim.zero_grad()
                    loss.backward()
                    optim.step()
                    total += float(loss.detach()) * len(idx)
                history.append(total / len(x))
        self.eval()
        self.lm.requires_grad_(True)
        return history

    @torch.no_grad()
    def decode(self, embeddings: np.ndarray, *, num_beams: int = 5, max_new_tokens: int | None = None) -> list[str]:
        """Beam-search captions (ClipCap / BrainSCUBA use 5 beams) of embeddings (n, embed_dim)."""
        x = _as_matrix(embeddings, self.config.embed_dim, "PrefixDecoder")
        self.eval()
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(x), 64):
            prefix = self.prefix(torch.from_numpy(x[start:start + 64]).to(device))
            ids = self.lm.generate(
                inputs_embeds=prefix,
                attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long, device=device),
                num_beams=num_beams,
                do_sample=False,
                max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            out.extend(t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return out

    # ---- persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``decoder.json``, ``prefix.safetensors`` (MLP), the GPT-2 (``lm/``) and its tokenizer into
        ``folder``, through a temporary folder renamed into place."""
        import shutil
        import tempfile

        from safetensors.torch import save_file

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            (tmp / "decoder.json").write_text(json.dumps(asdict(self.config), indent=2))
            save_file({k: v.detach().cpu().contiguous() for k, v in self.mlp.state_dict().items()},
                      str(tmp / "prefix.safetensors"))
            self.lm.save_pretrained(tmp / "lm", safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / "lm")
            if folder.exists():
                shutil.rmtree(folder)
            tmp.replace(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, device: str = "auto") -> PrefixDecoder:
        """Load a decoder written by :meth:`save` (weights only through safetensors)."""
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, GPT2LMHeadModel

        from braincode.devices import resolve_device

        folder = Path(folder)
        missing = [n for n in ("decoder.json", "prefix.safetensors", "lm/config.json") if not (folder / n).is_file()]
        if missing:
            raise MissingFileError("not a prefix-decoder folder", path=folder,
                                   expected="decoder.json, prefix.safetensors, lm/", found=f"missing {missing}",
                                   fix="train one with `braincode train-decoder` or PrefixDecoder.save")
        config = PrefixConfig(**json.loads((folder / "decoder.json").read_text()))
        decoder = cls(GPT2LMHeadModel.from_pretrained(folder / "lm"), AutoTokenizer.from_pretrained(folder / "lm"),
                      config)
        decoder.mlp.load_state_dict(load_file(str(folder / "prefix.safetensors")))
        return decoder.to(resolve_device(device)).eval()
