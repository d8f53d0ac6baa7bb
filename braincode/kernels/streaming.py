"""Many queries against millions of keys streamed in chunks: online-softmax projection and streaming top-k.

Keys (and values) may be a torch tensor, a numpy array, a ``numpy.memmap`` (e.g. a FeatureStore file) or any
array-like that returns an (n, D) array for a row slice ``keys[a:b]``. Only one chunk of keys is in memory at a
time; pages of a numpy memmap are handed back to the OS after each chunk, so the resident set stays bounded
even when the key file is larger than RAM.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from braincode.errors import ConfigError
from braincode.progress import progress

_SCORE_TILE_BYTES = 256 * 2**20


def _rows_cols(a: Any, name: str) -> tuple[int, int]:
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] == 0:
        raise ConfigError(
            f"{name} is not a non-empty 2-D array",
            expected="shape (n, D), indexable by row slices (torch tensor, numpy array or memmap)",
            found=f"shape {shape}" if shape is not None else type(a).__name__,
        )
    return int(shape[0]), int(shape[1])


def _check_queries(queries: torch.Tensor, dim: int) -> None:
    if not isinstance(queries, torch.Tensor) or queries.ndim != 2 or not queries.is_floating_point():
        raise ConfigError(
            "queries must be a 2-D floating-point torch tensor",
            found=getattr(queries, "shape", type(queries).__name__), fix="torch.as_tensor(q, dtype=torch.float32)",
        )
    if queries.shape[1] != dim:
        raise ConfigError(
            "queries and keys differ in feature dimension",
            expected=f"queries of shape (n, {dim})", found=f"shape {tuple(queries.shape)}",
        )


def default_key_chunk(n_queries: int) -> int:
    """Keys per chunk so that one float32 (n_queries x chunk) score tile is ~256 MiB.

    Examples
    --------
    >>> default_key_chunk(20000)
    3355
    """
    return max(64, _SCORE_TILE_BYTES // (4 * n_queries))


def release_rows(array: Any, start: int, stop: int) -> None:
    """Tell the OS that rows [start, stop) of a numpy memmap are not needed any more (drops them from RSS)."""
    handle = getattr(array, "_mmap", None)
    if not isinstance(array, np.memmap) or not isinstance(handle, mmap.mmap) or array.mode == "c":
        return  # copy-on-write maps would lose their private changes
    base = np.frombuffer(handle, dtype=np.uint8).ctypes.data
    first = array[start:stop].ctypes.data - base
    last = first + (stop - start) * array.strides[0]
    first -= first % mmap.PAGESIZE
    handle.madvise(mmap.MADV_DONTNEED, first, last - first)


def _chunks(n: int, chunk: int, desc: str) -> Iterator[tuple[int, int]]:
    for start in progress(range(0, n, chunk), desc=desc, total=-(-n // chunk)):
        yield start, min(start + chunk, n)


def _load(array: Any, start: int, stop: int, like: torch.Tensor) -> torch.Tensor:
    """Rows [start, stop) of ``array`` as a tensor with ``like``'s dtype and device (a copy for numpy inputs)."""
    rows = array[start:stop]
    if isinstance(rows, torch.Tensor):
        return rows.to(device=like.device, dtype=like.dtype)
    tensor = torch.tensor(np.asarray(rows), dtype=like.dtype, device=like.device)
    release_rows(array, start, stop)
    return tensor


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def softmax_project(
    queries: torch.Tensor,
    keys: Any,
    values: Any = None,
    temperature: float = 1.0,
    key_chunk: int | None = None,
    *,
    normalize: bool = False,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``out_i = sum_j softmax_j(temperature * q_i . k_j) v_j`` with keys streamed in chunks (online softmax).

    Memory is O(n_queries x key_chunk) plus one chunk of keys and values, whatever the number of keys. This is
    the BrainSCUBA projection: with ``normalize=True`` and ``temperature=150`` it computes
    ``softmax(150 * w_hat . M_hat_j)``-weighted sums of the values (pass the unit embeddings as values for the
    direction, their norms as a (n, 1) array for the norm, as the paper averages them separately).

    Parameters
    ----------
    queries : torch.Tensor
        (n_queries, D), float; its dtype and device are used for the computation.
    keys : array-like
        (n_keys, D), indexable by row slices (torch tensor, numpy array, ``numpy.memmap``).
    values : array-like, optional
        (n_keys, Dv), same access pattern; default: the keys themselves.
    temperature : float
        Multiplies the scores before the softmax.
    key_chunk : int, optional
        Keys per chunk; default :func:`default_key_chunk`.
    normalize : bool
        L2-normalise queries and keys (not values) before the dot products.
    return_lse : bool
        Also return the log-sum-exp of the scores per query, (n_queries,).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        (n_queries, Dv) and, if asked, (n_queries,).

    Examples
    --------
    >>> import numpy as np
    >>> keys = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
    >>> q = torch.randn(5, 8)
    >>> out = softmax_project(q, keys, temperature=2.0, key_chunk=128)
    >>> full = torch.softmax(2.0 * q @ torch.from_numpy(keys).T, dim=1) @ torch.from_numpy(keys)
    >>> torch.allclose(out, full, atol=1e-5)
    True
    """
    n_keys, dim = _rows_cols(keys, "keys")
    values = keys if values is None else values
    n_values, dv = _rows_cols(values, "values")
    _check_queries(queries, dim)
    if n_values != n_keys:
        raise ConfigError("values and keys differ in length", expected=f"{n_keys} rows of values",
                          found=f"{n_values}", fix="pass one value row per key")
    chunk = _check_chunk(key_chunk, queries.shape[0])
    q = (_unit(queries) if normalize else queries) * temperature
    run_max = torch.full((q.shape[0], 1), float("-inf"), dtype=q.dtype, device=q.device)
    run_sum = torch.zeros_like(run_max)
    acc = torch.zeros(q.shape[0], dv, dtype=q.dtype, device=q.device)
    for start, stop in _chunks(n_keys, chunk, "softmax_project"):
        k = _load(keys, start, stop, q)
        scores = q @ (_unit(k) if normalize else k).T
        new_max = torch.maximum(run_max, scores.amax(dim=1, keepdim=True))
        rescale = torch.exp(run_max - new_max)
        weights = scores.sub_(new_max).exp_()
        run_sum = run_sum * rescale + weights.sum(dim=1, keepdim=True)
        acc = torch.addmm(acc * rescale, weights, k if values is keys else _load(values, start, stop, q))
        run_max = new_max
    out = acc / run_sum
    return (out, (run_max + run_sum.log()).squeeze(1)) if return_lse else out


def topk(
    queries: torch.Tensor,
    keys: Any,
    k: int,
    key_chunk: int | None = None,
    *,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest scores ``q_i . k_j`` per query and their key indices, keys streamed in chunks.

    Parameters
    ----------
    queries : torch.Tensor
        (n_queries, D).
    keys : array-like
        (n_keys, D), indexable by row slices.
    k : int
        How many per query, 1 <= k <= n_keys.
    key_chunk : int, optional
        Keys per chunk; default :func:`default_key_chunk`.
    normalize : bool
        Score with cosine similarity (L2-normalised queries and keys).

    Returns
    -------
    scores : torch.Tensor
        (n_queries, k), descending.
    indices : torch.Tensor
        (n_queries, k) int64 row indices into ``keys``.

    Examples
    --------
    >>> keys = torch.eye(4)
    >>> scores, idx = topk(torch.tensor([[0.0, 2.0, 1.0, 0.0]]), keys, k=2, key_chunk=3)
    >>> idx.tolist(), scores.tolist()
    ([[1, 2]], [[2.0, 1.0]])
    """
    n_keys, dim = _rows_cols(keys, "keys")
    _check_queries(queries, dim)
    if not isinstance(k, int) or not 1 <= k <= n_keys:
        raise ConfigError("topk k is out of range", expected=f"an integer in [1, {n_keys}]", found=repr(k))
    chunk = _check_chunk(key_chunk, queries.shape[0])
    q = _unit(queries) if normalize else queries
    best = torch.empty(q.shape[0], 0, dtype=q.dtype, device=q.device)
    best_idx = torch.empty(q.shape[0], 0, dtype=torch.long, device=q.device)
    for start, stop in _chunks(n_keys, chunk, "topk"):
        keys_chunk = _load(keys, start, stop, q)
        scores = torch.cat([best, q @ (_unit(keys_chunk) if normalize else keys_chunk).T], dim=1)
        chunk_idx = torch.arange(start, stop, device=q.device).expand(q.shape[0], -1)
        best, pos = scores.topk(min(k, scores.shape[1]), dim=1)
        best_idx = torch.cat([best_idx, chunk_idx], dim=1).gather(1, pos)
    return best, best_idx


def _check_chunk(key_chunk: int | None, n_queries: int) -> int:
    if key_chunk is None:
        return default_key_chunk(n_queries)
    if not isinstance(key_chunk, int) or key_chunk < 1:
        raise ConfigError("key_chunk must be a positive integer", found=repr(key_chunk), fix="e.g. 4096")
    return key_chunk
