"""ClipCap (Mokady, Hertz & Bermano 2021), BrainSCUBA's caption decoder, as in the authors' ``predict.py``.

An MLP (Linear -> Tanh -> Linear) maps a **raw-scale** CLIP image embedding to ``prefix_length`` token embeddings
that a GPT-2 continues into a caption. Decoding follows the original exactly (checked token for token against
``tests/fixtures/clipcap``, produced by the authors' code): every step re-runs GPT-2 on the whole embedding
sequence; greedy decoding appends the stop token and halts; beam search ranks candidates by their mean
log-probability (``log(softmax)``) across all beams, freezes stopped beams (extended by token 0 at log-prob 0),
and returns the hypotheses by score / length, best first.

Build a decoder from a released ClipCap checkpoint (:meth:`PrefixDecoder.from_clipcap`, read with
``torch.load(weights_only=True)``), from a local GPT-2 with a fresh MLP (:meth:`PrefixDecoder.from_gpt2`), or as a
tiny random GPT-2 with a word tokenizer (:meth:`PrefixDecoder.tiny`); train with :meth:`PrefixDecoder.fit`; save
and load with :mod:`braincode.persist` (one folder: ``config.json`` + ``model.safetensors``, tokenizer included).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from braincode.errors import ConfigError, DataFormatError, ModelError
from braincode.interpret._tokenizers import fast_tokenizer, word_tokenizer
from braincode.interpret.decoders import _as_matrix
from braincode.progress import progress

log = logging.getLogger(__name__)

#: Keys of older GPT-2 checkpoints that are causal-mask constants, not weights.
_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")


@dataclass(frozen=True)
class PrefixConfig:
    """Shape and decoding settings of a :class:`PrefixDecoder`.

    Parameters
    ----------
    embed_dim : int
        Dimension of the input embeddings (512 for CLIP ViT-B/32).
    prefix_length : int
        Number of prefix token embeddings (10 in ClipCap / BrainSCUBA).
    hidden : int
        Hidden width of the MLP; ClipCap uses ``prefix_length * n_embd // 2`` (3840 for GPT-2 small).
    stop_token : str
        Text whose first token ends a caption ("." in ClipCap and BrainSCUBA).
    max_tokens : int
        Longest caption (67 tokens in ClipCap).
    beam_size : int
        Beams of :meth:`PrefixDecoder.decode` (5 in ClipCap).
    """

    embed_dim: int
    prefix_length: int = 10
    hidden: int = 0
    stop_token: str = "."
    max_tokens: int = 67
    beam_size: int = 5


def _gpt2(config: Mapping[str, Any] | str | Path):
    """A GPT-2 LM head model (random weights) from a config dict, a ``config.json`` or a model folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if isinstance(config, (str, Path)):
        config = GPT2Config.from_pretrained(Path(config)).to_dict()
    keep = {k: v for k, v in dict(config).items() if k not in ("architectures", "transformers_version", "dtype")}
    return GPT2LMHeadModel(GPT2Config(**keep)).eval()


class PrefixDecoder(nn.Module):
    """ClipCap: MLP(raw embedding) -> ``prefix_length`` token embeddings -> GPT-2 -> caption.

    Parameters
    ----------
    lm : GPT2LMHeadModel
    tokenizer : tokenizer or None
        Needed for text (``decode``, ``fit``); ``generate`` works on token ids without one.
    config : PrefixConfig

    Examples
    --------
    >>> import numpy as np
    >>> caps = ["a photo of a face", "a photo of a house"] * 8
    >>> emb = 3 * np.repeat(np.eye(2, 8, dtype=np.float32), 8, axis=0)[[0, 8] * 8]
    >>> dec = PrefixDecoder.tiny(8, caps, random_state=0)
    >>> losses = dec.fit(emb, caps, epochs=30, lr=3e-3, batch_size=8, device="cpu", progress_bar=False)
    >>> losses[-1] < losses[0]
    True
    >>> dec.decode(emb[:2])
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
    def from_clipcap(
        cls,
        state_dict: Mapping[str, torch.Tensor] | str | Path,
        gpt2_config: Mapping[str, Any] | str | Path,
        *,
        tokenizer=None,
        stop_token: str = ".",
        max_tokens: int = 67,
        beam_size: int = 5,
    ) -> PrefixDecoder:
        """A decoder from a ClipCap checkpoint (MLP mapping) and the config of its GPT-2.

        Parameters
        ----------
        state_dict : mapping or path
            ``ClipCaptionModel.state_dict()`` (keys ``clip_project.model.{0,2}.*`` and ``gpt.*``), or the ``.pt``
            file of a released checkpoint, read with ``torch.load(weights_only=True)``.
        gpt2_config : mapping or path
            The GPT-2 config (a dict, a ``config.json`` or a GPT-2 folder).
        tokenizer : optional
            GPT-2's tokenizer, for text output.

        Examples
        --------
        >>> dec = PrefixDecoder.from_clipcap("coco_weights.pt", "gpt2/", tokenizer=tok)  # doctest: +SKIP
        """
        if isinstance(state_dict, (str, Path)):
            state_dict = torch.load(Path(state_dict), map_location="cpu", weights_only=True)
        if not any(k.startswith("clip_project.model.0.") for k in state_dict):
            mapper = "a transformer mapper" if any(k.startswith("clip_project.") for k in state_dict) else "none"
            raise ModelError("not a ClipCap MLP checkpoint", expected="keys clip_project.model.0.* / .2.* and gpt.*",
                             found=f"mapping network: {mapper}; first keys {list(state_dict)[:3]}",
                             fix="use a ClipCap checkpoint trained with the MLP mapping (prefix length <= 10)")
        lm = _gpt2(gpt2_config)
        first, second = state_dict["clip_project.model.0.weight"], state_dict["clip_project.model.2.weight"]
        n_embd = lm.config.n_embd
        if second.shape[0] % n_embd:
            raise ModelError("the checkpoint's prefix does not fit the GPT-2 width", expected=f"a multiple of {n_embd}",
                             found=str(second.shape[0]), fix="pass the GPT-2 config the checkpoint was trained with")
        config = PrefixConfig(int(first.shape[1]), second.shape[0] // n_embd, int(first.shape[0]), stop_token,
                              max_tokens, beam_size)
        decoder = cls(lm, tokenizer, config)
        decoder.mlp.load_state_dict({k[len("clip_project.model."):]: v for k, v in state_dict.items()
                                     if k.startswith("clip_project.model.")})
        gpt = {k[len("gpt."):]: v for k, v in state_dict.items()
               if k.startswith("gpt.") and not k.endswith(_MASK_BUFFERS)}
        missing, unexpected = lm.load_state_dict(gpt, strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and lm.config.tie_word_embeddings)]
        if missing or unexpected:
            raise ModelError("the checkpoint's GPT-2 does not match the config", expected="the same parameter names",
                             found=f"missing {missing[:4]}, unexpected {unexpected[:4]}")
        return decoder.eval()

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
        """A random-weight GPT-2 of the given size with a word tokenizer learnt from ``captions``; captions end
        with the tokenizer's ``<eos>``, which is then the stop token."""
        tokenizer = word_tokenizer(captions)
        config = {"vocab_size": len(tokenizer), "n_positions": prefix_length + 80, "n_embd": n_embd,
                  "n_layer": n_layer, "n_head": n_head, "bos_token_id": tokenizer.eos_token_id,
                  "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            return cls(_gpt2(config), tokenizer, PrefixConfig(embed_dim, prefix_length, stop_token="<eos>"))

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
            return cls(GPT2LMHeadModel.from_pretrained(path).eval(), tokenizer, PrefixConfig(embed_dim, prefix_length))

    # ---- model
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _tensor(self, prefix) -> torch.Tensor:
        x = torch.as_tensor(_as_matrix(prefix, self.config.embed_dim, "PrefixDecoder")
                            if not torch.is_tensor(prefix) else prefix)
        return x.to(self.device, torch.float32)

    def prefix_embeddings(self, prefix) -> torch.Tensor:
        """Prefix token embeddings (n, prefix_length, n_embd) of raw embeddings (n, embed_dim); no normalisation."""
        x = self._tensor(prefix)
        return self.mlp(x).view(len(x), self.config.prefix_length, -1)

    def logits(self, prefix, tokens) -> torch.Tensor:
        """Teacher-forced logits (n, prefix_length + n_tokens, vocab) of ``tokens`` (n, n_tokens) after each prefix."""
        tokens = torch.as_tensor(tokens, device=self.device)
        inputs = torch.cat([self.prefix_embeddings(prefix), self.lm.get_input_embeddings()(tokens)], dim=1)
        return self.lm(inputs_embeds=inputs, use_cache=False).logits

    def _next_logits(self, generated: torch.Tensor) -> torch.Tensor:
        return self.lm(inputs_embeds=generated, use_cache=False).logits[:, -1, :]

    def _greedy(self, embed: torch.Tensor, max_tokens: int, stop: int) -> list[list[int]]:
        """``generate2`` on each row of ``embed`` (B, L, E); a row that emitted the stop token is frozen."""
        wte, n = self.lm.get_input_embeddings(), len(embed)
        tokens = torch.zeros(n, 0, dtype=torch.long, device=embed.device)
        lengths = torch.full((n,), max_tokens, dtype=torch.long)
        live = torch.arange(n)
        for step in range(max_tokens):
            nxt = self._next_logits(embed[live]).argmax(-1)  # generate2's top-p filter never removes the argmax
            column = torch.zeros(n, dtype=torch.long, device=embed.device)
            column[live] = nxt
            tokens = torch.cat([tokens, column[:, None]], dim=1)
            embed = torch.cat([embed, wte(column)[:, None]], dim=1)
            ended = nxt.eq(stop).cpu()
            lengths[live[ended]] = step + 1
            live = live[~ended]
            if len(live) == 0:
                break
        return [row[: int(k)].tolist() for row, k in zip(tokens, lengths)]

    def _beam(self, embed: torch.Tensor, beam_size: int, max_tokens: int, stop: int) -> list[list[list[int]]]:
        """``generate_beam`` on each row of ``embed`` (B, L, E), all rows at once; a row whose beams have all
        stopped is frozen, as the original stops there."""
        wte, n, k = self.lm.get_input_embeddings(), len(embed), beam_size
        rows = torch.arange(n, device=embed.device)[:, None]
        logp = self._next_logits(embed).softmax(-1).log()
        scores, tokens = logp.topk(k, -1)  # (B, k): the k best first tokens, lengths 1
        tokens = tokens[..., None]
        lengths = torch.ones(n, k, device=embed.device)
        stopped = tokens[..., 0].eq(stop)
        embed = torch.cat([embed[:, None].expand(n, k, *embed.shape[1:]), wte(tokens)], dim=2)
        for _ in range(max_tokens - 1):
            live = ~stopped.all(1)
            if not live.any():
                break
            idx = live.nonzero()[:, 0]
            logp = self._next_logits(embed[idx].flatten(0, 1)).softmax(-1).log().view(len(idx), k, -1)
            done = stopped[idx]
            logp[done] = -float("inf")
            logp[..., 0][done] = 0
            total = scores[idx][..., None] + logp
            length = lengths[idx] + (~done).float()
            average, flat = (total / length[..., None]).flatten(1).topk(k, -1)
            source, nxt = flat // total.shape[-1], flat % total.shape[-1]
            sub = rows[: len(idx)]
            lengths[idx] = length[sub, source]
            scores[idx] = average * lengths[idx]
            stopped[idx] = done[sub, source] | nxt.eq(stop)
            step_tokens = torch.zeros(n, k, 1, dtype=torch.long, device=embed.device)
            step_tokens[idx] = nxt[..., None]
            kept_tokens, kept_embed = tokens.clone(), embed.clone()
            kept_tokens[idx], kept_embed[idx] = tokens[idx][sub, source], embed[idx][sub, source]
            tokens = torch.cat([kept_tokens, step_tokens], dim=2)
            embed = torch.cat([kept_embed, wte(step_tokens)], dim=2)
        order = (scores / lengths).argsort(dim=1, descending=True)
        return [[tokens[b, i, : int(lengths[b, i])].tolist() for i in order[b]] for b in range(n)]

    def stop_token_id(self) -> int:
        """Id of the first token of ``config.stop_token`` (needs the tokenizer)."""
        if self.tokenizer is None:
            raise ConfigError("no tokenizer to find the stop token", fix="pass stop_token_id= or a tokenizer")
        return int(self.tokenizer.encode(self.config.stop_token, add_special_tokens=False)[0])

    @torch.no_grad()
    def generate(
        self,
        prefix,
        *,
        method: str = "beam",
        beam_size: int | None = None,
        max_tokens: int | None = None,
        stop_token_id: int | None = None,
        batch_size: int = 1,
    ) -> list:
        """Token ids of each prefix, decoded as ClipCap's ``generate2`` (greedy) or ``generate_beam`` (beam).

        Parameters
        ----------
        prefix : array (n, embed_dim)
            Raw-scale embeddings; each is decoded on its own.
        method : {"greedy", "beam"}
        beam_size, max_tokens : int, optional
            Default: the config's (5 and 67 in ClipCap).
        stop_token_id : int, optional
            Default: the tokenizer's id of ``config.stop_token``.
        batch_size : int
            Prefixes decoded together (1: one at a time, as the original; more is faster and gives the same ids
            unless two candidates tie to float rounding, as checked on the reference fixture).

        Returns
        -------
        list
            Per prefix: the ids, stop token included when reached (greedy), or every hypothesis' ids, best first
            (beam).
        """
        if method not in ("greedy", "beam"):
            raise ConfigError("unknown decoding method", expected='"greedy" or "beam"', found=repr(method))
        beam_size = beam_size or self.config.beam_size
        max_tokens = max_tokens or self.config.max_tokens
        stop = self.stop_token_id() if stop_token_id is None else int(stop_token_id)
        self.eval()
        embeds = self.prefix_embeddings(prefix)
        run = self._greedy if method == "greedy" else partial(self._beam, beam_size=beam_size)
        return [out for start in range(0, len(embeds), max(batch_size, 1))
                for out in run(embeds[start:start + max(batch_size, 1)], max_tokens=max_tokens, stop=stop)]

    def decode(self, embeddings: np.ndarray, *, method: str = "beam", beam_size: int | None = None,
               batch_size: int = 16) -> list[str]:
        """Captions of raw embeddings (n, embed_dim): the best hypothesis of each, as text."""
        if self.tokenizer is None:
            raise ConfigError("the decoder has no tokenizer, so it cannot write text", fix="pass tokenizer=")
        ids = self.generate(embeddings, method=method, beam_size=beam_size, batch_size=batch_size)
        best = ids if method == "greedy" else [hyps[0] for hyps in ids]
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in best]

    # ---- training
    def loss(self, embeddings: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """Mean next-token cross-entropy of ``captions`` (each ended by the stop token) after their prefixes."""
        stop = self.config.stop_token
        texts = [c if c.rstrip().endswith(stop) else f"{c}{stop}" for c in map(str, captions)]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids, mask = batch["input_ids"].to(embeddings.device), batch["attention_mask"].to(embeddings.device)
        prefix = self.prefix_embeddings(embeddings)
        inputs = torch.cat([prefix, self.lm.get_input_embeddings()(ids)], dim=1)
        ones = torch.ones(prefix.shape[:2], dtype=mask.dtype, device=ids.device)
        labels = torch.cat([torch.full(prefix.shape[:2], -100, device=ids.device), ids.masked_fill(mask == 0, -100)], 1)
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
        """Train on (raw embedding, caption) pairs with AdamW; returns the mean loss of each epoch.

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
        optim = torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
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

    # ---- persistence (braincode.persist)
    def _get_state(self) -> tuple[dict, dict]:
        tokenizer = None
        if self.tokenizer is not None:
            tokenizer = {"json": self.tokenizer.backend_tokenizer.to_str(),
                         "specials": {k: getattr(self.tokenizer, k, None)
                                      for k in ("eos_token", "bos_token", "pad_token", "unk_token")}}
        tensors = {f"mlp.{k}": v for k, v in self.mlp.state_dict().items()}
        tied = self.lm.config.tie_word_embeddings
        tensors.update({f"lm.{k}": v for k, v in self.lm.state_dict().items() if not (tied and k == "lm_head.weight")})
        return {"prefix": asdict(self.config), "gpt2": self.lm.config.to_dict(), "tokenizer": tokenizer}, tensors

    @classmethod
    def _from_state(cls, config: dict, tensors: dict, device: torch.device) -> PrefixDecoder:
        tok = config.get("tokenizer")
        tokenizer = None if tok is None else fast_tokenizer(tok["json"], tok["specials"])
        decoder = cls(_gpt2(config["gpt2"]), tokenizer, PrefixConfig(**config["prefix"]))
        decoder.mlp.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("mlp.")})
        decoder.lm.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("lm.")},
                                   strict=not decoder.lm.config.tie_word_embeddings)
        return decoder.to(device).eval()

    def save(self, folder: str | Path) -> Path:
        """Write the decoder (weights, GPT-2 config and tokenizer) with :func:`braincode.persist.save`."""
        from braincode import persist

        return persist.save(self, folder)

    @classmethod
    def load(cls, folder: str | Path, *, device: str = "auto") -> PrefixDecoder:
        """Read a decoder written by :meth:`save` (:func:`braincode.persist.load`)."""
        from braincode import persist

        decoder = persist.load(folder, device=device)
        if not isinstance(decoder, cls):
            raise DataFormatError("the folder holds another kind of model", path=folder,
                                  expected="a PrefixDecoder", found=type(decoder).__name__,
                                  fix="train one with `braincode train-decoder`")
        return decoder
