"""Where model weights come from: device choice, seeded random init, local-cache lookups and fingerprints."""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from braincode.errors import ModelError

#: Seed of every ``@random`` model: the same id always gives the same weights.
RANDOM_SEED = 0

_HASH_CHUNK = 1 << 22


@contextmanager
def seeded(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Run the block with torch's CPU random generator seeded, restoring the caller's generator state afterwards.

    Examples
    --------
    >>> with seeded(3):
    ...     a = torch.rand(2)
    >>> with seeded(3):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes and values).

    Examples
    --------
    >>> with seeded():
    ...     a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> module_fingerprint(a) == module_fingerprint(a), module_fingerprint(a) == module_fingerprint(b)
    (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """A content fingerprint of a weight file.

    Files in a Hugging Face cache are symlinks to blobs named by their SHA-256, which is used as is; any other
    file is hashed.
    """
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    digest = hashlib.sha256()
    with open(real, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment at each call.

    ``HF_HUB_CACHE`` if set, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def find_hf_cached(repo_id: str, filenames: Sequence[str]) -> Path | None:
    """Path of the first of ``filenames`` of ``repo_id`` that is already in the local hub cache, else None.

    Never touches the network.
    """
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def missing_weights_error(weights: str, looked: Sequence[str | Path], fetch: str) -> ModelError:
    """The one error raised when pretrained weights are not on this machine (nothing is downloaded)."""
    return ModelError(
        f"the pretrained weights {weights} are not in the local cache, and braincode does not download during "
        "extraction",
        expected="the weight file in " + " or ".join(str(p) for p in looked),
        found="no such file",
        fix=f"run once on a machine with network access: {fetch} (set HF_HOME to choose where the hub cache "
        "lives), pass a local path, or ask for random weights with @random",
    )


def unknown_name_error(source: str, name: str, choices: Sequence[str], listing: str) -> ModelError:
    """Error for a model name that ``source`` does not know, with the closest valid names."""
    close = difflib.get_close_matches(name, list(choices), n=8, cutoff=0.5)
    shown = close or list(choices)[:8]
    return ModelError(
        f"{source} has no model named {name!r}",
        expected=("one of " if len(choices) <= 8 else "a known name, e.g. ") + ", ".join(shown),
        found=repr(name),
        fix=f"pick a name from {listing} ({len(choices)} names)",
    )
