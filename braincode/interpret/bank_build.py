"""Building an embedding bank (:mod:`braincode.interpret.bank`) from a folder of images or an HDF5 file."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from braincode.data.core import Stimuli
from braincode.errors import DataFormatError, MissingFileError
from braincode.interpret.bank import EmbeddingBank, _BankWriter, _normalise, embed_stimuli, load_bank

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_captions(folder: Path, names: Sequence[str]) -> list[str] | None:
    """Captions of the images ``names`` from a ``captions.csv`` (columns ``image``, ``caption``) in ``folder`` or
    up to two folders above it (the Algonauts-layout subject folder); ``None`` when there is no such file. Images
    missing from the file get ``""``."""
    for candidate in (folder / "captions.csv", folder.parent / "captions.csv", folder.parent.parent / "captions.csv"):
        if candidate.is_file():
            table = pd.read_csv(candidate, dtype=str, keep_default_na=False)
            if not {"image", "caption"} <= set(table.columns):
                raise DataFormatError("captions file lacks columns", path=candidate,
                                      expected="columns image, caption", found=str(list(table.columns)))
            lookup = dict(zip(table["image"].map(lambda s: Path(s).name), table["caption"]))
            return [lookup.get(Path(n).name, "") for n in names]
    return None


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise MissingFileError("image folder not found", path=folder, fix="pass a folder of images or an HDF5 file")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataFormatError("no images in the folder", path=folder,
                              expected=f"files ending in {', '.join(IMAGE_SUFFIXES)}", found="none")
    return files


def _hdf5_chunks(path: Path, chunk: int, *, with_images: bool = True,
                 ) -> tuple[int, list[str], list[str] | None, Iterator[Stimuli]]:
    """Size, ids, captions and an iterator of Stimuli chunks (images spilled to temporary PNGs, or captions only
    when ``with_images`` is False) of an HDF5 file."""
    import h5py
    from PIL import Image

    with h5py.File(path, "r") as f:
        if "images" not in f or f["images"].ndim != 4 or f["images"].shape[-1] != 3:
            raise DataFormatError("HDF5 bank source lacks an image array", path=path,
                                  expected='a dataset "images" of shape (n, H, W, 3) uint8',
                                  found=str({k: getattr(f[k], "shape", None) for k in f}))
        n = int(f["images"].shape[0])
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["ids"][:]] if "ids" in f else [
            f"{path.stem}-{i:07d}" for i in range(n)]
        captions = [s.decode() if isinstance(s, bytes) else str(s) for s in f["captions"][:]] if "captions" in f else None

    def chunks() -> Iterator[Stimuli]:
        if not with_images:
            for start in range(0, n, chunk):
                yield Stimuli(ids=ids[start:start + chunk], captions=captions[start:start + chunk])
            return
        with h5py.File(path, "r") as f, tempfile.TemporaryDirectory() as tmp:
            for start in range(0, n, chunk):
                block = f["images"][start:start + chunk]
                files = []
                for i, img in enumerate(block):
                    files.append(Path(tmp) / f"{start + i:07d}.png")
                    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(files[-1])
                yield Stimuli(ids=ids[start:start + len(block)], paths=files,
                              captions=None if captions is None else captions[start:start + len(block)])
                for file in files:
                    file.unlink()

    return n, ids, captions, chunks()


def build_bank(
    source: str | Path,
    model_id: str,
    out: str | Path,
    *,
    layer: str = "pooled",
    from_captions: bool = False,
    store=None,
    batch_size: int = 32,
    chunk: int = 4096,
    device: str = "auto",
    progress: bool = True,
) -> EmbeddingBank:
    """Embed every image of a folder (or of an HDF5 file) with ``model_id`` and write the bank into ``out``.

    Parameters
    ----------
    source : str or Path
        A folder of images (searched recursively; a ``captions.csv`` with columns ``image, caption`` in it or up
        to two folders above supplies captions), or an HDF5 file with ``images`` (n, H, W, 3) uint8 and
        optionally ``ids`` and ``captions``.
    model_id : str
        Extractor id, e.g. ``open_clip:ViT-B-32@openai`` (or a text model such as ``minilm`` with
        ``from_captions=True``).
    out : str or Path
        Bank folder to write.
    layer : str
        Extractor layer giving one vector per image (token layers are mean-pooled).
    from_captions : bool
        Embed the captions instead of the images (needs a caption for every image).
    store : FeatureStore, optional
        Feature cache shared with the rest of braincode.
    chunk : int
        Images per extraction call; bounds the memory in use.

    Examples
    --------
    >>> bank = build_bank("images/", "open_clip:ViT-B-32@openai", "bank/")  # doctest: +SKIP
    """
    from braincode.features import get_extractor

    source_path = Path(source)
    kind = "captions" if from_captions else "images"
    if source_path.suffix.lower() in (".h5", ".hdf5"):
        if not source_path.is_file():
            raise MissingFileError("HDF5 bank source not found", path=source_path)
        n, ids, captions, chunks = _hdf5_chunks(source_path, chunk, with_images=not from_captions)
        paths = None
    else:
        files = _image_files(source_path)
        n, ids, paths = len(files), [str(f.relative_to(source_path)) for f in files], files
        captions = read_captions(source_path, [f.name for f in files])
        chunks = (Stimuli(ids=ids[s:s + chunk], paths=files[s:s + chunk],
                          captions=None if captions is None else captions[s:s + chunk]) for s in range(0, n, chunk))
    if n == 0:
        raise DataFormatError("the bank source holds no images", path=source_path, expected="at least one image")
    if from_captions and captions is None:
        raise DataFormatError("from_captions needs captions", path=source_path,
                              expected="a captions.csv (columns image, caption) or an HDF5 'captions' dataset")
    extractor = get_extractor(model_id, layers=[layer], device=device)
    writer, start = None, 0
    for stim in chunks:
        x = embed_stimuli(stim, model_id, layer=layer, source=kind, store=store, batch_size=batch_size,
                          progress=progress, extractor=extractor)
        if writer is None:
            writer = _BankWriter(Path(out), n, x.shape[1])
        writer.unit[start:start + len(x)], writer.norms[start:start + len(x)] = _normalise(x)
        start += len(x)
    log.info("bank of %d %s embedded with %s/%s in %s", n, kind, model_id, layer, out)
    writer.finish(ids, captions, paths, {"model_id": model_id, "layer": layer, "source": kind,
                                         "built_from": str(source_path)})
    return load_bank(out)
