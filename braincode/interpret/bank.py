"""Image-embedding bank: unit-normalised image embeddings of many natural images, their norms and captions.

BrainSCUBA projects voxel weights onto such a bank, LaVCa ranks its images per voxel. A bank lives in a folder::

    bank.json        model id, layer, size, dimension, source
    embeddings.npy   (n, D) float32, each row L2-normalised (memory-mapped when loaded)
    norms.npy        (n,) float32, the norm each row had before normalisation
    items.csv        id, path, caption ("" when unknown), one row per embedding

Banks are built (:func:`braincode.interpret.bank_build.build_bank`) in chunks written straight into a
memory-mapped file, so their size is bounded by disk, not RAM; projections stream them from disk. A bank is
data, not a fitted model, so it keeps this memory-mapped layout rather than :mod:`braincode.persist`'s format.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from braincode.data.core import Stimuli
from braincode.errors import DataFormatError, MissingFileError

log = logging.getLogger(__name__)

_FILES = ("bank.json", "embeddings.npy", "norms.npy", "items.csv")


@dataclass(frozen=True)
class EmbeddingBank:
    """Unit image embeddings with their norms, ids and optional captions and image paths.

    Parameters
    ----------
    ids : tuple of str
        One id per bank entry.
    unit : ndarray of shape (n, D)
        L2-normalised embeddings, float32 (often a read-only memmap).
    norms : ndarray of shape (n,)
        Norm of each embedding before normalisation.
    captions : tuple of str, optional
        A caption per entry when known.
    paths : tuple of Path, optional
        The image file of each entry when known.
    model_id : str
        The extractor that made the embeddings, e.g. ``"open_clip:ViT-B-32@openai"`` ("" when unknown).
    layer : str
        Its layer (token layers are mean-pooled).
    source : {"images", "captions"}
        What the model read: the images, or their captions (a text model standing in for CLIP's joint space,
        e.g. ``minilm``, when no image-text model is available).

    Examples
    --------
    >>> import numpy as np
    >>> bank = bank_from_arrays(["a", "b"], np.array([[3.0, 4.0], [0.0, 2.0]]), captions=["x", "y"])
    >>> bank.unit.tolist(), bank.norms.tolist(), len(bank)
    ([[0.6000000238418579, 0.800000011920929], [0.0, 1.0]], [5.0, 2.0], 2)
    """

    ids: tuple[str, ...]
    unit: np.ndarray
    norms: np.ndarray
    captions: tuple[str, ...] | None = None
    paths: tuple[Path, ...] | None = None
    model_id: str = ""
    layer: str = "pooled"
    source: str = "images"

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.source not in ("images", "captions"):
            raise DataFormatError("unknown bank source", expected='"images" or "captions"', found=repr(self.source))
        if self.unit.ndim != 2 or self.unit.shape[0] != n or self.norms.shape != (n,):
            raise DataFormatError(
                "bank arrays disagree",
                expected=f"unit (n={n}, D) and norms ({n},)",
                found=f"unit {self.unit.shape}, norms {self.norms.shape}",
            )
        for name in ("captions", "paths"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataFormatError(f"bank has {len(value)} {name} for {n} entries", fix="pass one per entry")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.unit.shape[1])

    def embeddings(self, index: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Raw (un-normalised) embeddings of the entries at ``index`` (all when ``None``), float32 in memory."""
        idx = slice(None) if index is None else np.asarray(index)
        return np.asarray(self.unit[idx], dtype=np.float32) * np.asarray(self.norms[idx], dtype=np.float32)[:, None]

    def stimuli(self) -> Stimuli:
        """The bank's images (and captions) as :class:`~braincode.data.core.Stimuli`."""
        return Stimuli(ids=self.ids, paths=self.paths, captions=self.captions)

    def embed(self, stimuli: Stimuli | Sequence[str], *, store=None, batch_size: int = 32, device: str = "auto",
              progress: bool = True) -> np.ndarray:
        """Raw embeddings (n, D) of other stimuli (images, or texts for a caption bank) in this bank's space."""
        if not self.model_id:
            raise DataFormatError("the bank does not name the model that made it", fix="rebuild it with build_bank")
        return embed_stimuli(stimuli, self.model_id, layer=self.layer, source=self.source, store=store,
                             batch_size=batch_size, device=device, progress=progress)

    def text_encoder(self) -> Callable[[Sequence[str]], np.ndarray] | None:
        """A function texts -> (n, D) embeddings in this bank's space, or ``None`` when its model has no text side.

        A caption bank embeds texts with its own model; an ``open_clip`` image bank (layer ``pooled``) with the
        CLIP text tower (``open_clip_text:``, the same joint space).

        Examples
        --------
        >>> import numpy as np
        >>> bank_from_arrays(["a"], np.ones((1, 4)), model_id="timm:resnet18@random").text_encoder() is None
        True
        """
        if self.source == "captions" and self.model_id:
            model_id, layer = self.model_id, self.layer
        elif self.model_id.startswith("open_clip:") and self.layer == "pooled":
            model_id, layer = "open_clip_text:" + self.model_id.split(":", 1)[1], "pooled"
        else:
            return None
        return lambda texts: embed_stimuli(list(texts), model_id, layer=layer, source="captions", progress=False)

    def save(self, folder: str | Path, *, meta: dict | None = None) -> Path:
        """Write the bank into ``folder`` (see the module docstring for the layout); returns ``folder``."""
        folder = Path(folder)
        writer = _BankWriter(folder, len(self), self.dim)
        for start in range(0, len(self), 65536):
            stop = min(start + 65536, len(self))
            writer.unit[start:stop] = self.unit[start:stop]
            writer.norms[start:stop] = self.norms[start:stop]
        writer.finish(self.ids, self.captions, self.paths,
                      {"model_id": self.model_id, "layer": self.layer, "source": self.source, **(meta or {})})
        return folder


_NSD_ID = re.compile(r"nsd-?(\d+)", re.IGNORECASE)


def _stimulus_keys(name: str) -> set[str]:
    stem = Path(str(name)).stem
    return {stem, *(f"nsd-{int(m)}" for m in _NSD_ID.findall(stem))}


def subject_overlap(bank: EmbeddingBank, stimuli: Stimuli) -> list[str]:
    """Bank ids that are images of ``stimuli``: the same file stem or NSD image id, confirmed by identical bytes
    when both sides have image files. BrainSCUBA's bank holds natural images the subject never saw, so a
    non-empty answer is worth a warning.

    Examples
    --------
    >>> bank = bank_from_arrays(["coco/x.jpg", "train-0001_nsd-00013.png"], np.eye(2))
    >>> subject_overlap(bank, Stimuli(ids=["shared1000_nsd-13"]))
    ['train-0001_nsd-00013.png']
    """
    import hashlib

    names = [*stimuli.ids, *(stimuli.paths or ())]
    keys = set().union(*(_stimulus_keys(str(n)) for n in names)) if names else set()
    hits = [j for j, i in enumerate(bank.ids)
            if _stimulus_keys(i) & keys or (bank.paths is not None and _stimulus_keys(bank.paths[j]) & keys)]
    if hits and bank.paths is not None and stimuli.paths is not None:
        digest = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
        own = set(stimuli.content_hashes)
        hits = [j for j in hits if Path(bank.paths[j]).is_file() and digest(bank.paths[j]) in own]
    return [bank.ids[j] for j in hits]


def warn_subject_overlap(bank: EmbeddingBank, stimuli: Stimuli) -> int:
    """Log a warning when the bank holds the subject's own stimuli; returns how many it holds."""
    overlap = subject_overlap(bank, stimuli)
    if overlap:
        log.warning("the bank holds %d of the subject's own stimuli (e.g. %s): BrainSCUBA's bank has none of them; "
                    "build it from other natural images", len(overlap), overlap[:3])
    return len(overlap)


def _normalise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    return unit.astype(np.float32), norms.astype(np.float32)


def bank_from_arrays(
    ids: Sequence[str],
    embeddings: np.ndarray,
    *,
    captions: Sequence[str] | None = None,
    paths: Sequence[str | Path] | None = None,
    model_id: str = "",
    layer: str = "pooled",
    source: str = "images",
) -> EmbeddingBank:
    """An in-memory bank from raw embeddings (n, D), e.g. features already extracted or text-model embeddings."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or len(embeddings) != len(ids):
        raise DataFormatError("embeddings must be (n, D) with one row per id",
                              expected=f"({len(ids)}, D)", found=str(embeddings.shape))
    unit, norms = _normalise(embeddings)
    return EmbeddingBank(
        ids=tuple(str(i) for i in ids),
        unit=unit,
        norms=norms,
        captions=None if captions is None else tuple(str(c) for c in captions),
        paths=None if paths is None else tuple(Path(p) for p in paths),
        model_id=model_id,
        layer=layer,
        source=source,
    )


class _BankWriter:
    """Pre-allocated memory-mapped bank files in a temporary folder, renamed into place by :meth:`finish`."""

    def __init__(self, folder: Path, n: int, dim: int) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".bank-"))
        self.unit = np.lib.format.open_memmap(self.tmp / "embeddings.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        self.norms = np.lib.format.open_memmap(self.tmp / "norms.npy", mode="w+", dtype=np.float32, shape=(n,))

    def finish(self, ids, captions, paths, meta: dict) -> None:
        self.unit.flush()
        self.norms.flush()
        items = pd.DataFrame({
            "id": list(ids),
            "path": [str(p) for p in paths] if paths is not None else "",
            "caption": list(captions) if captions is not None else "",
        })
        items.to_csv(self.tmp / "items.csv", index=False)
        info = {"n": int(self.unit.shape[0]), "dim": int(self.unit.shape[1]),
                "has_captions": captions is not None, "has_paths": paths is not None, **meta}
        (self.tmp / "bank.json").write_text(json.dumps(info, indent=2))
        del self.unit, self.norms
        for name in _FILES:
            (self.tmp / name).replace(self.folder / name)
        self.tmp.rmdir()


def load_bank(folder: str | Path) -> EmbeddingBank:
    """Open a bank folder written by :func:`build_bank` or :meth:`EmbeddingBank.save` (embeddings memory-mapped).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> folder = bank_from_arrays(["a", "b"], np.eye(2), captions=["a cat", "a dog"]).save(tempfile.mkdtemp())
    >>> load_bank(folder).captions
    ('a cat', 'a dog')
    """
    folder = Path(folder)
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise MissingFileError(
            "not an embedding bank",
            path=folder,
            expected=", ".join(_FILES),
            found=f"missing {', '.join(missing)}",
            fix="build it with `braincode.interpret.bank_build.build_bank(images, model_id, folder)`",
        )
    info = json.loads((folder / "bank.json").read_text())
    items = pd.read_csv(folder / "items.csv", dtype=str, keep_default_na=False)
    return EmbeddingBank(
        ids=tuple(items["id"]),
        unit=np.load(folder / "embeddings.npy", mmap_mode="r"),
        norms=np.load(folder / "norms.npy", mmap_mode="r"),
        captions=tuple(items["caption"]) if info.get("has_captions") else None,
        paths=tuple(Path(p) for p in items["path"]) if info.get("has_paths") else None,
        model_id=info.get("model_id", ""),
        layer=info.get("layer", "pooled"),
        source=info.get("source", "images"),
    )


def embed_stimuli(
    stimuli: Stimuli | Sequence[str],
    model_id: str,
    *,
    layer: str = "pooled",
    source: str = "images",
    store=None,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool = True,
    extractor=None,
) -> np.ndarray:
    """One vector per stimulus (n, D) float32: ``layer`` of ``model_id`` on the images, or on the captions when
    ``source="captions"`` (token layers mean-pooled)."""
    from braincode.features import get_extractor

    extractor = extractor or get_extractor(model_id, layers=[layer], device=device)
    if source == "captions" and isinstance(stimuli, Stimuli):
        if stimuli.captions is None or not all(stimuli.captions):
            raise DataFormatError("a caption bank needs a caption for every image",
                                  fix="add a captions.csv (columns image, caption) beside the images")
        stimuli = list(stimuli.captions)
    x = np.asarray(extractor.extract(stimuli, batch_size=batch_size, store=store, progress=progress)[layer])
    return (x.mean(axis=1) if x.ndim == 3 else x.reshape(len(x), -1)).astype(np.float32)
