"""On-disk feature cache: a second run reads instead of computing, and only new stimuli are computed.

Layout under ``root``::

    <model id>/<layer>-<key digest>/key.json            what the key is made of (for people)
    <model id>/<layer>-<key digest>/chunk-<id>.npy      float32 rows, one per stimulus
    <model id>/<layer>-<key digest>/chunk-<id>.json     the content hash of each row

The key digest covers the model id, the weights' fingerprint, the layer and the preprocessing, so changing
any of them starts a new folder. Each chunk's ``.npy`` is written (temp file, then rename) before its ``.json``;
a chunk without its ``.json`` is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from braincode.atomic import atomic_write, honour_umask
from braincode.errors import ConfigError

log = logging.getLogger(__name__)

#: Bumped when the meaning of stored arrays changes, so that old caches are not read.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CacheKey:
    """What identifies one layer's features of one model.

    Parameters
    ----------
    model_id : str
        e.g. ``"open_clip:ViT-B-32@openai"``.
    fingerprint : str
        Identifies the weights (hash of the weight file, or of the seeded random weights).
    layer : str
        e.g. ``"pooled"`` or ``"blocks.3"``.
    preprocess : str
        Describes the preprocessing (the image transform's repr, or the tokenizer settings).

    Examples
    --------
    >>> a = CacheKey("open_clip:ViT-B-32@openai", "abc", "pooled", "Compose(...)")
    >>> a.digest() == CacheKey("open_clip:ViT-B-32@openai", "abd", "pooled", "Compose(...)").digest()
    False
    """

    model_id: str
    fingerprint: str
    layer: str
    preprocess: str

    def digest(self) -> str:
        """A short hash of every field (and the store format version)."""
        text = json.dumps({**asdict(self), "format": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class _Chunk:
    path: Path
    hashes: tuple[str, ...]


class _DiskArrays:
    """Temporary ``.npy`` memory maps beside each layer's chunks; whatever is not committed is removed."""

    def __init__(self, folders: Mapping[str, Path]) -> None:
        self.folders = folders
        self.temps: dict[str, Path] = {}
        self._created: list[Path] = []

    def allocate(self, layer: str, shape: tuple[int, ...]) -> np.ndarray:
        """A zero-filled float32 array of ``shape`` backed by a temporary file in ``layer``'s folder."""
        folder = self.folders[layer]
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".chunk-", suffix=".npy")
        os.close(fd)
        honour_umask(name)  # mkstemp makes 0600 files; cached features are shared like every other output
        self.temps[layer] = Path(name)
        self._created.append(Path(name))
        return np.lib.format.open_memmap(name, mode="w+", dtype=np.float32, shape=shape)

    def discard(self) -> None:
        """Remove the temporary files that were not renamed into chunks."""
        for path in self._created:
            path.unlink(missing_ok=True)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text).strip("_")[:80] or "model"


class FeatureStore:
    """A folder of cached features, keyed by model, weights, layer, preprocessing and stimulus content.

    Parameters
    ----------
    root : str or Path
        The cache folder (created when first written).

    Attributes
    ----------
    stats : dict
        ``{"hits": stimuli read from the cache, "misses": stimuli computed}``, counted over this object's life.

    Notes
    -----
    Arrays come back memory-mapped (``np.load(mmap_mode="r")``, read-only) when every requested stimulus lies,
    in order, in one stored chunk (the usual case of re-running the same stimuli); otherwise the rows are
    gathered into an ordinary array. No pickle is ever written or read.

    Examples
    --------
    >>> import tempfile
    >>> store = FeatureStore(tempfile.mkdtemp())
    >>> key = {"pooled": CacheKey("demo:model", "w0", "pooled", "none")}
    >>> compute = lambda idx, allocate: {"pooled": np.arange(len(idx) * 2, dtype=np.float32).reshape(-1, 2)}
    >>> first = store.fetch(key, ["h1", "h2"], compute)
    >>> again = store.fetch(key, ["h1", "h2"], compute)
    >>> store.stats, bool((first["pooled"] == again["pooled"]).all())
    ({'hits': 2, 'misses': 2}, True)
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.stats = {"hits": 0, "misses": 0}

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    def folder(self, key: CacheKey) -> Path:
        """The folder holding ``key``'s chunks."""
        return self.root / _safe_name(key.model_id) / f"{_safe_name(key.layer)}-{key.digest()}"

    def fetch(
        self,
        keys: Mapping[str, CacheKey],
        hashes: Sequence[str],
        compute: Callable[
            [np.ndarray, Callable[[str, tuple[int, ...]], np.ndarray]], Mapping[str, np.ndarray]
        ],
    ) -> dict[str, np.ndarray]:
        """Every layer of ``keys`` for the stimuli with content ``hashes``, computing only what is not stored.

        Parameters
        ----------
        keys : mapping of str to CacheKey
            Layer name -> its cache key.
        hashes : sequence of str
            One content hash per stimulus, in the order of the result rows.
        compute : callable
            ``compute(positions, allocate)`` returns ``{layer: array}`` with one row per position (positions
            into ``hashes``); it is called at most once, with the first position of each missing content.
            Arrays it gets from ``allocate(layer, shape)`` live on disk in the store (float32 ``.npy``
            memory maps), so results larger than memory can be computed; a failure removes them.

        Returns
        -------
        dict of str to ndarray
            One float32 array per layer with ``len(hashes)`` rows.
        """
        hashes = list(hashes)
        if not hashes:
            raise ConfigError(
                "no stimuli to fetch features for", expected="at least one content hash", found="0"
            )
        index = {layer: self._index(self.folder(key)) for layer, key in keys.items()}
        first_missing: dict[str, int] = {}
        for pos, h in enumerate(hashes):
            if h not in first_missing and any(h not in idx for idx in index.values()):
                first_missing[h] = pos
        if first_missing:
            positions = np.fromiter(first_missing.values(), dtype=np.int64, count=len(first_missing))
            new_hashes = list(first_missing)
            arrays = _DiskArrays({layer: self.folder(key) for layer, key in keys.items()})
            try:
                computed = compute(positions, arrays.allocate)
                for layer, key in keys.items():
                    chunk = self._commit(key, new_hashes, computed[layer], arrays.temps.get(layer))
                    index[layer].update({h: (chunk, row) for row, h in enumerate(chunk.hashes)})
            finally:
                arrays.discard()
        n_missing = sum(h in first_missing for h in hashes)
        self.stats["hits"] += len(hashes) - n_missing
        self.stats["misses"] += n_missing
        return {layer: self._assemble(index[layer], hashes) for layer in keys}

    def _index(self, folder: Path) -> dict[str, tuple[_Chunk, int]]:
        """Content hash -> (chunk, row) over the complete chunks of ``folder``."""
        index: dict[str, tuple[_Chunk, int]] = {}
        for meta in sorted(folder.glob("chunk-*.json")):
            npy = meta.with_suffix(".npy")
            try:
                hashes = tuple(json.loads(meta.read_text())["hashes"])
                n_rows = np.load(npy, mmap_mode="r").shape[0]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable cache chunk %s (%s); it will be recomputed", meta, exc)
                continue
            if n_rows != len(hashes):
                log.warning("ignoring cache chunk %s: %d rows for %d hashes", npy, n_rows, len(hashes))
                continue
            chunk = _Chunk(npy, hashes)
            for row, h in enumerate(hashes):
                index.setdefault(h, (chunk, row))
        return index

    def _commit(self, key: CacheKey, hashes: list[str], array: np.ndarray, temp: Path | None) -> _Chunk:
        """Store ``array`` (one row per hash) as a new chunk of ``key``'s folder; the ``.json`` goes last.

        ``temp`` is the file behind ``array`` when it came from :meth:`_DiskArrays.allocate`: it is renamed
        into place instead of copied.
        """
        folder = self.folder(key)
        if not (folder / "key.json").exists():
            atomic_write(folder / "key.json", lambda p: p.write_text(json.dumps(asdict(key), indent=2)))
        name = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:24]
        npy, meta = folder / f"chunk-{name}.npy", folder / f"chunk-{name}.json"
        if len(array) != len(hashes):
            raise ValueError(f"computed {len(array)} rows for {len(hashes)} stimuli ({key.layer})")
        if (
            isinstance(array, np.memmap)
            and temp is not None
            and os.path.abspath(array.filename) == os.path.abspath(temp)
        ):
            array.flush()
            os.replace(temp, npy)
        else:
            data = np.ascontiguousarray(array, dtype=np.float32)
            atomic_write(npy, lambda p: np.save(p, data, allow_pickle=False))
        atomic_write(meta, lambda p: p.write_text(json.dumps({"hashes": hashes, "shape": list(array.shape)})))
        return _Chunk(npy, tuple(hashes))

    @staticmethod
    def _assemble(index: Mapping[str, tuple[_Chunk, int]], hashes: list[str]) -> np.ndarray:
        """Rows for ``hashes``: a memory-mapped slice when they are consecutive rows of one chunk."""
        where = [index[h] for h in hashes]
        chunks = {chunk.path: chunk for chunk, _ in where}
        arrays = {path: np.load(path, mmap_mode="r", allow_pickle=False) for path in chunks}
        rows = np.array([row for _, row in where], dtype=np.int64)
        if len(chunks) == 1 and len(rows) and (np.diff(rows) == 1).all():
            return arrays[next(iter(chunks))][rows[0] : rows[-1] + 1]
        first = next(iter(arrays.values()))
        out = np.empty((len(hashes), *first.shape[1:]), dtype=np.float32)
        paths = np.array([str(chunk.path) for chunk, _ in where])
        for path, array in arrays.items():
            sel = np.flatnonzero(paths == str(path))
            out[sel] = array[rows[sel]]
        return out
