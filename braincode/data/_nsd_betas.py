"""NSD single-trial betas -> per-image responses, one session at a time, in bounded memory.

Each session is read into one float32 (trials, n_voxels) block, z-scored per voxel (float64 inside voxel chunks),
and its trials are added, weighted ``1 / repeats``, into the rows of their images. The rows live in memory, or -
when the responses would not fit comfortably - in ``.npy`` files written with plain file I/O (never mapped while
being written, so the process holds at most one session and one chunk of rows) and returned memory-mapped.
Peak memory is one session's block plus one hemisphere's file, whatever the number of sessions.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from braincode.progress import progress

#: Voxels z-scored / accumulated at once (bounds the float64 scratch and the row chunks written to files).
VOXEL_CHUNK = 16_384
#: Responses larger than this share of the available memory are memory-mapped when ``memmap=None``.
MEMMAP_SHARE = 0.25


@dataclass(frozen=True)
class SplitRows:
    """Where each trial of a split goes: ``rows[t]`` (row of the output) with weight ``weights[t]``."""

    trials: np.ndarray  # indices of the split's trials among all loaded trials
    rows: np.ndarray
    weights: np.ndarray
    ids: np.ndarray  # NSD id of each output row
    counts: np.ndarray  # repeats of each image in the split


def split_rows(trial_ids: np.ndarray, in_split: np.ndarray, average: bool) -> SplitRows:
    """Rows of a split: one per image (sorted by NSD id, trials averaged) or one per trial (in order)."""
    trials = np.flatnonzero(in_split)
    ids = trial_ids[trials]
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if average:
        return SplitRows(trials, inverse, (1.0 / counts[inverse]).astype(np.float32), uniq, counts)
    return SplitRows(trials, np.arange(trials.size), np.ones(trials.size, np.float32), ids, counts)


def zscore_columns(x: np.ndarray) -> None:
    """z-score each voxel (column) of float32 ``x`` across trials in place (ddof=0); constant voxels become 0."""
    for start in range(0, x.shape[1], VOXEL_CHUNK):
        block = x[:, start : start + VOXEL_CHUNK].astype(np.float64)
        block -= block.mean(0)
        sd = block.std(0)
        x[:, start : start + VOXEL_CHUNK] = np.divide(block, sd, out=np.zeros_like(block), where=sd > 0)


class _Rows:
    """Output rows (n_rows, n_voxels) float32, in memory or in an ``.npy`` file; ``add`` accumulates blocks."""

    def __init__(self, shape: tuple[int, int], path: Path | None):
        self.shape, self.path = shape, path
        if path is None:
            self.array = np.zeros(shape, np.float32)
            return
        header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        self.offset = header.offset
        del header  # a sparse file of zeros: nothing stays mapped
        self.file = open(path, "r+b")  # noqa: SIM115 - closed by result()

    def add(self, rows: np.ndarray, start: int, block: np.ndarray) -> None:
        """``out[rows, start:start + block.shape[1]] += block`` (rows sorted, distinct)."""
        if self.path is None:
            for row, values in zip(rows.tolist(), block):
                self.array[row, start : start + block.shape[1]] += values
            return
        buffer = np.empty(block.shape[1], np.float32)
        for row, values in zip(rows.tolist(), block):
            position = self.offset + 4 * (row * self.shape[1] + start)
            self.file.seek(position)
            self.file.readinto(memoryview(buffer))
            buffer += values
            self.file.seek(position)
            self.file.write(memoryview(buffer))

    def result(self) -> np.ndarray | None:
        """The rows when in memory; None once the file is complete (closed, nothing mapped)."""
        if self.path is None:
            return self.array
        self.file.close()
        return None


def session_responses(
    reader,
    sessions: Sequence[tuple[int, list[Path]]],
    per_session: int,
    splits: dict[str, SplitRows],
    *,
    scale: float | str,
    zscore: bool,
    folder: Path | None,
) -> dict[str, np.ndarray | None]:
    """Per-split responses (n_rows, n_voxels) float32 from the sessions' betas (module docstring).

    ``folder``: write the rows to ``<folder>/<split>.npy`` instead (the values returned are then None).
    """
    n_voxels = reader.n_voxels
    outputs = {
        name: _Rows((split.ids.size, n_voxels), None if folder is None else folder / f"{name}.npy")
        for name, split in splits.items()
    }
    block = np.empty((per_session, n_voxels), np.float32)
    for k, (number, files) in enumerate(progress(sessions, desc="NSD sessions", total=len(sessions))):
        reader.read_into(number, files, block, scale)
        if zscore:
            zscore_columns(block)
        first = k * per_session
        for name, split in splits.items():
            here = (split.trials >= first) & (split.trials < first + per_session)
            if not here.any():
                continue
            rows, inverse = np.unique(split.rows[here], return_inverse=True)
            weights = scipy.sparse.csr_matrix(
                (split.weights[here], (inverse, split.trials[here] - first)), shape=(rows.size, per_session)
            )
            for start in range(0, n_voxels, VOXEL_CHUNK):
                chunk = np.ascontiguousarray(block[:, start : start + VOXEL_CHUNK])
                outputs[name].add(rows, start, np.asarray(weights @ chunk, dtype=np.float32))
    return {name: out.result() for name, out in outputs.items()}


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``, else free pages), None if unknown."""
    try:
        with open("/proc/meminfo") as fp:
            for line in fp:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def should_memmap(n_bytes: int) -> bool:
    """Whether responses of ``n_bytes`` exceed :data:`MEMMAP_SHARE` of the available memory."""
    available = available_memory()
    return available is not None and n_bytes > MEMMAP_SHARE * available


class CachedResponses:
    """A content-keyed folder of per-split ``.npy`` responses: reused when complete, built atomically otherwise.

    ``<cache>/<key>/`` holds ``<split>.npy`` and ``done.json`` (what it was made from); it is written into a
    temporary sibling and renamed, so a killed load never leaves a folder that looks complete.
    """

    def __init__(self, cache: Path, key: dict):
        text = json.dumps(key, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        self.key, self.final = json.loads(text), Path(cache) / digest  # as done.json will read back
        self.staging = Path(cache) / f".{digest}.{secrets.token_hex(4)}.tmp"

    def load(self, names: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The cached responses, memory-mapped, when the folder is complete and was made from the same key."""
        try:
            done = json.loads((self.final / "done.json").read_text())
        except (OSError, ValueError):
            return None
        if done != self.key or not all((self.final / f"{n}.npy").is_file() for n in names):
            return None
        return {n: np.load(self.final / f"{n}.npy", mmap_mode="r") for n in names}

    def build(self) -> Path:
        self.staging.mkdir(parents=True)
        return self.staging

    def commit(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        (self.staging / "done.json").write_text(json.dumps(self.key, sort_keys=True))
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.staging, self.final)
        return {n: np.load(self.final / f"{n}.npy", mmap_mode="r") for n in names}

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
