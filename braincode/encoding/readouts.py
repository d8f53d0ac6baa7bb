"""Token readouts: voxel responses from a frozen backbone's patch tokens, trained end to end in torch.

Two readouts, both scikit-learn estimators on token arrays ``(n, T, D)`` (prefix tokens first, then the patch
grid in row-major order) and targets ``(n, n_voxels)``:

- :class:`RoutingReadout` — the transformer brain encoder (Adeli, Sun & Kriegeskorte 2025): learned queries (one
  per ROI, one per voxel, or a fixed number) cross-attend to the patch tokens through one pre-norm decoder layer
  (cross-attention + feed-forward) with sine positions added to the keys; each voxel reads its own query's
  output with its own linear weights. Attention runs on :func:`braincode.kernels.attention`.
- :class:`FactorizedReadout` — per-voxel spatial x feature factorization: a softmax map over the token grid times
  per-voxel feature weights, with a Laplacian smoothness penalty on the map logits and an L1 penalty on the
  feature weights.

Both train with :func:`braincode.encoding.training.train_readout` (AdamW, gradient clipping, early stopping on
validation Pearson r), predict in batches, and save to a folder holding ``weights.safetensors`` and
``config.json`` (no pickle).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.base import BaseEstimator
from torch import nn
from torch.utils.checkpoint import checkpoint

from braincode.atomic import atomic_write
from braincode.encoding.metrics import pearson_r
from braincode.encoding.training import (
    TrainConfig,
    TrainHistory,
    predict_batches,
    resolve_device,
    train_readout,
)
from braincode.errors import ConfigError, DataFormatError, MissingFileError, NotFittedError
from braincode.kernels import attention, attention_probs

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


# --------------------------------------------------------------------------------------------------- helpers
def sine_positions(grid: tuple[int, int], d_model: int, temperature: float = 10000.0) -> torch.Tensor:
    """2-D sine positional encoding (DETR style) of a ``grid`` of patches, shape ``(gh * gw, d_model)``.

    The first half of the channels encodes the row, the second half the column, each as interleaved sines and
    cosines of the normalised coordinate (in ``(0, 2 pi)``) at geometrically spaced frequencies.

    Examples
    --------
    >>> sine_positions((2, 3), 8).shape
    torch.Size([6, 8])
    """
    if d_model % 4:
        raise ConfigError("sine positions need d_model divisible by 4", found=str(d_model))
    half = d_model // 2
    freq = temperature ** (2 * (torch.arange(half) // 2) / half)

    def encode(n: int) -> torch.Tensor:
        angle = ((torch.arange(n) + 0.5) / n * 2 * math.pi)[:, None] / freq
        return torch.where(torch.arange(half) % 2 == 0, angle.sin(), angle.cos())

    gh, gw = grid
    rows = encode(gh)[:, None, :].expand(gh, gw, half)
    cols = encode(gw)[None, :, :].expand(gh, gw, half)
    return torch.cat([rows, cols], dim=-1).reshape(gh * gw, d_model)


def _voxel_chunks(n_voxels: int, chunk: int) -> list[slice]:
    return [slice(s, min(s + chunk, n_voxels)) for s in range(0, n_voxels, chunk)]


def _maybe_checkpoint(fn, *args: torch.Tensor) -> torch.Tensor:
    """Run ``fn(*args)``, recomputing it in the backward pass when gradients are on (memory of one chunk only)."""
    if torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class TokenStandardizer(nn.Module):
    """Drops prefix tokens and z-scores each feature with training statistics stored as buffers."""

    def __init__(self, d_in: int, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("scale", torch.ones(d_in))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens[:, self.num_prefix_tokens:] - self.mean) / self.scale

    def set_statistics(self, tokens: np.ndarray, batch_size: int = 32) -> None:
        """Per-feature mean and standard deviation over stimuli and patch tokens, in float64, batch by batch."""
        total = np.zeros(self.mean.numel())
        square = np.zeros_like(total)
        count = 0
        for start in range(0, len(tokens), batch_size):
            x = np.asarray(tokens[start:start + batch_size], dtype=np.float64)[:, self.num_prefix_tokens:]
            x = x.reshape(-1, x.shape[-1])
            total, square, count = total + x.sum(0), square + (x * x).sum(0), count + len(x)
        mean = total / count
        std = np.sqrt(np.maximum(square / count - mean**2, 0.0))
        self.mean.copy_(torch.from_numpy(mean))
        self.scale.copy_(torch.from_numpy(np.where(std > 1e-8, std, 1.0)))


# --------------------------------------------------------------------------------------------------- modules
class RoutingModule(nn.Module):
    """One pre-norm cross-attention decoder layer from learned queries to patch tokens, and per-voxel heads.

    Parameters
    ----------
    d_in : int
        Feature size of the tokens.
    grid : (int, int)
        Patch grid (rows, columns).
    num_prefix_tokens : int
        Leading non-patch tokens (class, registers) to drop.
    query_index : LongTensor of shape (n_voxels,) or None
        The query each voxel reads (``"roi"`` mode); ``None`` with ``per_voxel=True`` gives one query per voxel;
        ``None`` with ``per_voxel=False`` lets every voxel read all ``n_queries`` outputs.
    n_queries : int
        Number of learned queries.
    n_voxels : int
        Number of outputs.
    per_voxel : bool
        One query per voxel, decoded ``voxel_chunk`` queries at a time.
    d_model, n_heads, d_ff, dropout : int, int, int, float
        Decoder size.
    backend : str
        Backend of :func:`braincode.kernels.attention`.
    voxel_chunk : int
        Queries decoded at once in per-voxel mode; each chunk is recomputed in the backward pass, so the memory
        is that of one chunk, never ``(batch, n_voxels, n_tokens)``.
    """

    def __init__(
        self,
        d_in: int,
        grid: tuple[int, int],
        num_prefix_tokens: int,
        query_index: torch.Tensor | None,
        n_queries: int,
        n_voxels: int,
        *,
        per_voxel: bool = False,
        d_model: int = 768,
        n_heads: int = 16,
        d_ff: int = 1024,
        dropout: float = 0.1,
        backend: str = "auto",
        voxel_chunk: int = 1024,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError("d_model must be a multiple of n_heads", found=f"d_model={d_model}, n_heads={n_heads}")
        self.grid, self.n_heads, self.backend, self.voxel_chunk = tuple(grid), n_heads, backend, voxel_chunk
        self.per_voxel = per_voxel
        self.standardize = TokenStandardizer(d_in, num_prefix_tokens)
        self.project = nn.Linear(d_in, d_model) if d_in != d_model else nn.Identity()
        self.register_buffer("positions", sine_positions(self.grid, d_model), persistent=False)
        self.queries = nn.Parameter(torch.randn(n_queries, d_model))
        self.norm_query = nn.LayerNorm(d_model)
        self.to_q, self.to_k = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.to_v, self.to_out = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.norm_out = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        read = d_model if (query_index is not None or per_voxel) else n_queries * d_model
        bound = 1.0 / math.sqrt(read)
        self.head_weight = nn.Parameter(torch.empty(n_voxels, read).uniform_(-bound, bound))
        self.head_bias = nn.Parameter(torch.zeros(n_voxels))
        self.register_buffer("query_index", query_index if query_index is not None else torch.zeros(0, dtype=torch.long))
        if query_index is not None:
            order = torch.argsort(query_index, stable=True)
            self.register_buffer("_order", order, persistent=False)
            self.register_buffer("_inverse", torch.argsort(order), persistent=False)
            self._counts = torch.bincount(query_index, minlength=n_queries).tolist()

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def memory(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (with sine positions) and values of the patch tokens, split into heads: ``(B, H, P, d_head)``."""
        patches = self.project(self.standardize(tokens))
        if patches.shape[1] != self.positions.shape[0]:
            raise DataFormatError("the tokens do not match the readout's patch grid",
                                  expected=f"{self.positions.shape[0]} patch tokens (grid {self.grid})",
                                  found=f"{patches.shape[1]}")
        return self._split_heads(self.to_k(patches + self.positions)), self._split_heads(self.to_v(patches))

    def _query_heads(self, queries: torch.Tensor) -> torch.Tensor:
        return self._split_heads(self.to_q(self.norm_query(queries))[None])

    def decode(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Decoder layer output ``(B, Lq, d_model)`` for ``queries`` ``(Lq, d_model)``, shared by the batch."""
        attended = attention(self._query_heads(queries), keys, values, backend=self.backend)
        b, h, lq, dh = attended.shape
        x = queries[None] + self.dropout(self.to_out(attended.transpose(1, 2).reshape(b, lq, h * dh)))
        x = x + self.dropout(self.ff(self.norm_ff(x)))
        return self.norm_out(x)

    def _voxel_chunk(self, rows: slice, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        out = self.decode(self.queries[rows], keys, values)
        return (out * self.head_weight[rows]).sum(-1) + self.head_bias[rows]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keys, values = self.memory(tokens)
        if self.per_voxel:
            parts = [_maybe_checkpoint(lambda k, v, r=rows: self._voxel_chunk(r, k, v), keys, values)
                     for rows in _voxel_chunks(len(self.head_bias), self.voxel_chunk)]
            return torch.cat(parts, dim=1)
        out = self.decode(self.queries, keys, values)
        if self.query_index.numel() == 0:
            return out.flatten(1) @ self.head_weight.T + self.head_bias
        weights = self.head_weight[self._order].split(self._counts)
        parts = [out[:, q] @ w.T for q, w in enumerate(weights) if len(w)]
        return torch.cat(parts, dim=1)[:, self._inverse] + self.head_bias

    def attention_maps(self, tokens: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """Each query's attention over the patch grid, averaged over heads: ``(B, Lq, gh, gw)``, rows sum to 1."""
        keys, _ = self.memory(tokens)
        queries = self.queries if queries is None else self.queries[queries]
        probs = attention_probs(self._query_heads(queries), keys, slice(None))
        return probs.mean(1).reshape(len(tokens), len(queries), *self.grid)


class FactorizedModule(nn.Module):
    """Per-voxel softmax spatial map over the patch grid times per-voxel feature weights.

    ``y[b, v] = sum_p softmax(logits[v])[p] * <x[b, p], w[v]> + bias[v]``, computed ``voxel_chunk`` voxels at a
    time (each chunk recomputed in the backward pass).

    Parameters
    ----------
    d_in : int
        Feature size of the tokens.
    grid : (int, int)
        Patch grid.
    num_prefix_tokens : int
        Leading non-patch tokens to drop.
    n_voxels : int
        Number of outputs.
    smoothness : float
        Weight of the mean squared Laplacian of each voxel's map logits over the grid.
    sparsity : float
        Weight of the mean absolute feature weight.
    voxel_chunk : int
        Voxels computed at once.
    """

    def __init__(
        self,
        d_in: int,
        grid: tuple[int, int],
        num_prefix_tokens: int,
        n_voxels: int,
        *,
        smoothness: float = 0.0,
        sparsity: float = 0.0,
        voxel_chunk: int = 1024,
    ) -> None:
        super().__init__()
        self.grid, self.smoothness, self.sparsity, self.voxel_chunk = tuple(grid), smoothness, sparsity, voxel_chunk
        self.standardize = TokenStandardizer(d_in, num_prefix_tokens)
        self.spatial_logits = nn.Parameter(torch.zeros(n_voxels, grid[0] * grid[1]))
        self.feature_weight = nn.Parameter(torch.randn(n_voxels, d_in) / math.sqrt(d_in))
        self.bias = nn.Parameter(torch.zeros(n_voxels))
        laplace = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("laplace", laplace[None, None], persistent=False)

    def spatial_maps(self) -> torch.Tensor:
        """The voxels' spatial maps ``(n_voxels, gh, gw)``, each summing to 1."""
        return self.spatial_logits.softmax(-1).view(-1, *self.grid)

    def _chunk(self, rows: slice, x: torch.Tensor) -> torch.Tensor:
        per_token = x @ self.feature_weight[rows].T  # (B, P, chunk)
        return torch.einsum("bpv,vp->bv", per_token, self.spatial_logits[rows].softmax(-1)) + self.bias[rows]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.standardize(tokens)
        if x.shape[1] != self.spatial_logits.shape[1]:
            raise DataFormatError("the tokens do not match the readout's patch grid",
                                  expected=f"{self.spatial_logits.shape[1]} patch tokens (grid {self.grid})",
                                  found=f"{x.shape[1]}")
        parts = [_maybe_checkpoint(lambda t, r=rows: self._chunk(r, t), x)
                 for rows in _voxel_chunks(len(self.bias), self.voxel_chunk)]
        return torch.cat(parts, dim=1)

    def penalty(self) -> torch.Tensor:
        """Smoothness (Laplacian of the map logits) plus sparsity (L1 of the feature weights)."""
        lap = F.conv2d(self.spatial_logits.view(-1, 1, *self.grid), self.laplace, padding=1)
        return self.smoothness * lap.pow(2).sum((1, 2, 3)).mean() + self.sparsity * self.feature_weight.abs().mean()


# --------------------------------------------------------------------------------------------------- estimators
def _check_tokens(X: Any, what: str) -> np.ndarray:
    if not hasattr(X, "shape") or len(X.shape) != 3:
        raise DataFormatError(f"{what} must be token maps", expected="an array of shape (n_stimuli, n_tokens, n_features)",
                              found=f"shape {getattr(X, 'shape', type(X).__name__)}",
                              fix='extract a "blocks.{i}" layer (tokens), not "pooled"')
    return X


def _infer_grid(n_patches: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    if grid is None:
        side = math.isqrt(n_patches)
        grid = (side, side)
    grid = (int(grid[0]), int(grid[1]))
    if grid[0] * grid[1] != n_patches:
        raise DataFormatError("cannot lay the patch tokens on a grid",
                              expected=f"grid rows x columns == {n_patches} patch tokens",
                              found=f"grid {grid}", fix="pass grid=(rows, cols) and the right num_prefix_tokens")
    return grid


class _Rows:
    """Rows ``index`` of a (possibly memory-mapped) array, read only when indexed: the subset is never copied."""

    def __init__(self, data: np.ndarray, index: np.ndarray) -> None:
        self.data, self.index = data, np.asarray(index)
        self.shape = (len(self.index), *data.shape[1:])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.data[self.index[key]]


class _TokenReadout(BaseEstimator):
    """Fit/predict/score/save shared by the token readouts; subclasses build the module."""

    _module_fields: tuple[str, ...] = ()

    def _build_module(self, d_in: int, grid: tuple[int, int], n_voxels: int, extra: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def _fit_extra(self, n_voxels: int, groups: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {}

    def _train_config(self) -> TrainConfig:
        return TrainConfig(lr=self.lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                           max_epochs=self.max_epochs, patience=self.patience, grad_clip=self.grad_clip)

    def fit(self, X: np.ndarray, Y: np.ndarray, groups: Any = None, *,
            X_val: np.ndarray | None = None, Y_val: np.ndarray | None = None) -> _TokenReadout:
        """Train on tokens ``X`` (n, T, D) and responses ``Y`` (n, n_voxels); early-stop on a validation split.

        Without ``X_val``/``Y_val`` a random ``validation_fraction`` of the training rows (drawn with
        ``random_state``) is held out for early stopping; their positions are kept in ``validation_index_``.
        ``groups`` (one label per voxel) is used by ``RoutingReadout(queries="roi")`` only.
        """
        X = _check_tokens(X, "X")
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or len(Y) != len(X):
            raise DataFormatError("responses must be (n_stimuli, n_voxels) with one row per token map",
                                  expected=f"shape ({len(X)}, n_voxels)", found=f"shape {Y.shape}")
        if not np.isfinite(Y).all():
            raise DataFormatError("responses contain NaN or infinite values", fix="drop or impute those voxels")
        config = self._train_config()
        self.validation_index_ = None
        if X_val is None:
            if not 0 < self.validation_fraction < 1:
                raise ConfigError("validation_fraction must be in (0, 1)", found=str(self.validation_fraction))
            order = np.random.default_rng(self.random_state).permutation(len(X))
            n_val = max(3, round(self.validation_fraction * len(X)))
            val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
            X, X_val, Y, Y_val = _Rows(X, train), _Rows(X, val), Y[train], Y[val]
            self.validation_index_ = val
        X_val = _check_tokens(X_val, "X_val")
        grid = _infer_grid(X.shape[1] - self.num_prefix_tokens, self.grid)
        extra, tensors = self._fit_extra(Y.shape[1], groups)
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            module = self._build_module(X.shape[2], grid, Y.shape[1], {**extra, **tensors})
        module.standardize.set_statistics(X)
        self.y_mean_ = Y.mean(0)
        self.y_scale_ = np.where(Y.std(0) > 1e-8, Y.std(0), 1.0).astype(np.float32)
        self.history_: TrainHistory = train_readout(
            module, X, (Y - self.y_mean_) / self.y_scale_, X_val, (np.asarray(Y_val) - self.y_mean_) / self.y_scale_,
            config=config, random_state=self.random_state, device=device, desc=type(self).__name__)
        self.module_, self.grid_, self.n_features_in_, self.n_voxels_ = module, grid, X.shape[2], Y.shape[1]
        self.extra_, self.n_tokens_ = extra, X.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted", fix="call fit(X, Y) or load() first")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted responses ``(n, n_voxels)``, float32."""
        self._check_fitted()
        X = _check_tokens(X, "X")
        if tuple(X.shape[1:]) != (self.n_tokens_, self.n_features_in_):
            raise DataFormatError("the tokens differ from those the readout was fitted on",
                                  expected=f"(n, {self.n_tokens_}, {self.n_features_in_})", found=str(X.shape),
                                  fix="extract the same model layer as for fitting")
        device = next(self.module_.parameters()).device
        z = predict_batches(self.module_, X, batch_size=4 * self.batch_size, device=device)
        return z * self.y_scale_ + self.y_mean_

    def score_voxels(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Pearson r per voxel between ``Y`` and the predictions for ``X``."""
        return pearson_r(Y, self.predict(X))

    def score(self, X: np.ndarray, Y: np.ndarray) -> float:
        """Mean over voxels of :meth:`score_voxels` (one float, as scikit-learn expects)."""
        return float(np.mean(self.score_voxels(X, Y)))

    def save(self, folder: str | Path) -> Path:
        """Write ``weights.safetensors`` and ``config.json`` into ``folder`` (each written atomically).

        Examples
        --------
        >>> folder = readout.save("out/routing")  # doctest: +SKIP
        >>> again = RoutingReadout.load(folder)  # doctest: +SKIP
        """
        self._check_fitted()
        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        state["y_mean"], state["y_scale"] = torch.from_numpy(self.y_mean_), torch.from_numpy(self.y_scale_)
        config = {"class": type(self).__name__, "params": self.get_params(), "grid": list(self.grid_),
                  "n_features_in": self.n_features_in_, "n_voxels": self.n_voxels_, "n_tokens": self.n_tokens_,
                  "extra": self.extra_, "best_epoch": self.history_.best_epoch, "val_r": self.history_.val_r}
        atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
        atomic_write(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2)))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> _TokenReadout:
        """Rebuild a readout written by :meth:`save` (any subclass: the config names it)."""
        folder = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise MissingFileError("saved readout is incomplete", path=folder / name,
                                       expected=f"{CONFIG_FILE} and {WEIGHTS_FILE}", fix="save the readout again")
        config = json.loads((folder / CONFIG_FILE).read_text())
        classes = {c.__name__: c for c in (RoutingReadout, FactorizedReadout)}
        if cls is not _TokenReadout:
            classes = {cls.__name__: cls}
        if config.get("class") not in classes:
            raise DataFormatError("unknown readout class", path=folder / CONFIG_FILE,
                                  expected=str(sorted(classes)), found=repr(config.get("class")))
        self = classes[config["class"]](**config["params"])
        state = load_file(str(folder / WEIGHTS_FILE))
        self.y_mean_, self.y_scale_ = state.pop("y_mean").numpy(), state.pop("y_scale").numpy()
        tensors = {k: state[k] for k in self._module_fields if k in state}
        self.grid_ = tuple(config["grid"])
        self.module_ = self._build_module(config["n_features_in"], self.grid_, config["n_voxels"],
                                          {**config["extra"], **tensors})
        self.module_.load_state_dict(state)
        self.module_.to(resolve_device(device)).eval()
        self.n_features_in_, self.n_voxels_, self.n_tokens_ = config["n_features_in"], config["n_voxels"], config["n_tokens"]
        self.extra_ = config["extra"]
        self.history_ = TrainHistory(val_r=config["val_r"], best_epoch=config["best_epoch"])
        return self


class RoutingReadout(_TokenReadout):
    """Attention-routing readout (transformer brain encoder) as a scikit-learn estimator.

    Parameters
    ----------
    queries : "roi", "voxel" or int
        ``"roi"``: one query per group label passed to :meth:`fit` (see :func:`braincode.data.rois.roi_groups`), each voxel reading
        its own group's query; ``"voxel"``: one query per voxel (decoded ``voxel_chunk`` at a time); an int: that
        many queries, each voxel reading all of them.
    d_model, n_heads, d_ff, dropout
        Decoder size (published: 768, 16, 1024, 0.1).
    num_prefix_tokens : int
        Leading non-patch tokens of ``X`` (class token, registers) to drop.
    grid : (int, int) or None
        Patch grid; ``None``: square.
    lr, weight_decay, batch_size, max_epochs, patience, grad_clip
        Training (see :class:`~braincode.encoding.training.TrainConfig`; published 5e-4, 1e-4, 16, 15, -, 0.1).
    validation_fraction : float
        Share of the training rows held out for early stopping when no validation set is passed.
    backend : str
        :func:`braincode.kernels.attention` backend.
    voxel_chunk : int
        Voxel queries decoded at once (``queries="voxel"``).
    random_state : int
        Seed of initialisation, validation split, shuffling and dropout.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 17, 8)).astype(np.float32)       # 1 class token + 4x4 patches
    >>> Y = X[:, 1:, :2].mean(1)                                  # two voxels
    >>> model = RoutingReadout(queries=2, d_model=16, n_heads=2, d_ff=16, num_prefix_tokens=1,
    ...                        max_epochs=2, device="cpu").fit(X, Y)
    >>> model.predict(X).shape
    (60, 2)
    """

    _module_fields = ("query_index",)

    def __init__(self, queries: str | int = "roi", *, d_model: int = 768, n_heads: int = 16, d_ff: int = 1024,
                 dropout: float = 0.1, num_prefix_tokens: int = 0, grid: tuple[int, int] | None = None,
                 lr: float = 5e-4, weight_decay: float = 1e-4, batch_size: int = 16, max_epochs: int = 15,
                 patience: int = 5, grad_clip: float | None = 0.1, validation_fraction: float = 0.1,
                 backend: str = "auto", voxel_chunk: int = 1024, random_state: int = 0,
                 device: str = "auto") -> None:
        self.queries, self.d_model, self.n_heads, self.d_ff, self.dropout = queries, d_model, n_heads, d_ff, dropout
        self.num_prefix_tokens, self.grid = num_prefix_tokens, grid
        self.lr, self.weight_decay, self.batch_size, self.max_epochs = lr, weight_decay, batch_size, max_epochs
        self.patience, self.grad_clip, self.validation_fraction = patience, grad_clip, validation_fraction
        self.backend, self.voxel_chunk, self.random_state, self.device = backend, voxel_chunk, random_state, device

    def _fit_extra(self, n_voxels: int, groups: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if self.queries == "roi":
            if groups is None or len(groups) != n_voxels:
                raise ConfigError('queries="roi" needs one group label per voxel',
                                  expected=f"groups of length {n_voxels}",
                                  found="none" if groups is None else f"length {len(groups)}",
                                  fix="fit(X, Y, groups=roi_groups(dataset.voxels))")
            labels, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
            extra = {"n_queries": len(labels), "query_labels": labels.tolist()}
            return extra, {"query_index": torch.from_numpy(index.astype(np.int64))}
        if self.queries == "voxel":
            return {"n_queries": n_voxels}, {}
        if isinstance(self.queries, (int, np.integer)) and not isinstance(self.queries, bool) and self.queries > 0:
            return {"n_queries": int(self.queries)}, {}
        raise ConfigError("unknown query mode", expected='"roi", "voxel" or a positive int', found=repr(self.queries))

    def _build_module(self, d_in: int, grid: tuple[int, int], n_voxels: int, extra: dict[str, Any]) -> RoutingModule:
        index = extra.get("query_index")
        if index is not None and index.numel() == 0:
            index = None
        return RoutingModule(d_in, grid, self.num_prefix_tokens, index, extra["n_queries"], n_voxels,
                             per_voxel=self.queries == "voxel", d_model=self.d_model, n_heads=self.n_heads,
                             d_ff=self.d_ff, dropout=self.dropout, backend=self.backend,
                             voxel_chunk=self.voxel_chunk)

    @property
    def query_labels_(self) -> list[str]:
        """Label of each learned query: the group labels in ``"roi"`` mode, else ``"voxel i"`` or ``"query i"``."""
        self._check_fitted()
        if "query_labels" in self.extra_:
            return list(self.extra_["query_labels"])
        kind = "voxel" if self.queries == "voxel" else "query"
        return [f"{kind} {i}" for i in range(self.extra_["n_queries"])]


class FactorizedReadout(_TokenReadout):
    """Spatial x feature factorized readout as a scikit-learn estimator.

    Parameters
    ----------
    smoothness : float
        Weight of the Laplacian penalty on each voxel's spatial-map logits.
    sparsity : float
        Weight of the L1 penalty on the feature weights.
    num_prefix_tokens, grid, lr, weight_decay, batch_size, max_epochs, patience, grad_clip,
    validation_fraction, voxel_chunk, random_state, device
        As in :class:`RoutingReadout`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(80, 16, 4)).astype(np.float32)       # 4x4 patches, no prefix token
    >>> Y = X[:, 5, :1] - X[:, 5, 1:2]                            # one voxel looking at patch 5
    >>> model = FactorizedReadout(lr=0.05, max_epochs=30, device="cpu").fit(X, Y)
    >>> int(model.spatial_maps_.reshape(1, -1).argmax())
    5
    """

    def __init__(self, *, smoothness: float = 1e-3, sparsity: float = 1e-4, num_prefix_tokens: int = 0,
                 grid: tuple[int, int] | None = None, lr: float = 1e-2, weight_decay: float = 0.0,
                 batch_size: int = 16, max_epochs: int = 30, patience: int = 5, grad_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, voxel_chunk: int = 1024, random_state: int = 0,
                 device: str = "auto") -> None:
        self.smoothness, self.sparsity, self.num_prefix_tokens, self.grid = smoothness, sparsity, num_prefix_tokens, grid
        self.lr, self.weight_decay, self.batch_size, self.max_epochs = lr, weight_decay, batch_size, max_epochs
        self.patience, self.grad_clip, self.validation_fraction = patience, grad_clip, validation_fraction
        self.voxel_chunk, self.random_state, self.device = voxel_chunk, random_state, device

    def _build_module(self, d_in: int, grid: tuple[int, int], n_voxels: int, extra: dict[str, Any]) -> FactorizedModule:
        return FactorizedModule(d_in, grid, self.num_prefix_tokens, n_voxels, smoothness=self.smoothness,
                                sparsity=self.sparsity, voxel_chunk=self.voxel_chunk)

    @property
    def spatial_maps_(self) -> np.ndarray:
        """Each voxel's spatial map over the patch grid, ``(n_voxels, gh, gw)``, summing to 1."""
        self._check_fitted()
        with torch.no_grad():
            return self.module_.spatial_maps().cpu().numpy()


def load_readout(folder: str | Path, device: str = "cpu") -> _TokenReadout:
    """Load a :class:`RoutingReadout` or :class:`FactorizedReadout` saved with ``save(folder)``.

    Examples
    --------
    >>> model = load_readout("out/routing")  # doctest: +SKIP
    """
    return _TokenReadout.load(folder, device=device)
