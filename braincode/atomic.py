"""Outputs that appear whole or not at all: one file (:func:`atomic_write`) or a command's whole output folder
(:func:`output_folder`).

A failure or a kill never leaves a partial file behind; files and folders are created with the user's umask (no
owner-only ``mkstemp`` modes), so collaborators and web servers can read them.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from braincode.errors import OutputBusyError

#: The manifest each :func:`output_folder` writes beside the outputs.
RUN_MANIFEST = "run.json"
#: Packages whose versions go into the manifest (when installed).
VERSIONED = ("braincode", "numpy", "torch", "scikit-learn", "open_clip_torch", "timm", "transformers")


def _sibling(path: Path, tag: str) -> Path:
    """A hidden, unique name beside ``path`` (same folder, hence same file system: renames are atomic)."""
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}{path.suffix}"


def umask() -> int:
    """The process's file-creation mask (read without changing it where ``/proc`` allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | Path) -> None:
    """Give ``path`` (and, for a folder, everything in it) the modes the umask gives new files and folders
    (some writers, such as safetensors and ``mkstemp``, create files readable by their owner only)."""
    path = Path(path)
    mask = umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path``.

    The temporary file keeps ``path``'s suffix (so ``np.save`` does not append another ``.npy``), gets the mode
    the umask gives new files, and is removed if ``write`` fails.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
    >>> _ = atomic_write(target, lambda p: p.write_text("hi"))
    >>> target.read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        write(tmp)
        honour_umask(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def folder_lock(path: str | Path) -> Iterator[Path]:
    """Hold the lock of output folder ``path`` (the file ``.<name>.lock`` beside it) for the ``with`` block.

    The lock is an ``flock`` on that file, so the system releases it when its holder dies, even by SIGKILL; the
    file is removed when the block ends.

    Raises
    ------
    OutputBusyError
        When another writer holds it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "fit"
    >>> with folder_lock(out):
    ...     with folder_lock(out):
    ...         pass
    Traceback (most recent call last):
    braincode.errors.OutputBusyError: ...: another braincode command is writing this folder; ...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    handle = _acquire(lock, path)
    try:
        handle.write(f"pid {os.getpid()} on {platform.node()}\n")
        handle.flush()
        yield path
    finally:
        lock.unlink(missing_ok=True)  # while still locked, so that no one can lock the old file in between
        handle.close()


def _acquire(lock: Path, path: Path):
    """Open and lock ``lock``; retry when its holder removed it between our open and our lock."""
    while True:
        handle = open(lock, "a+")  # noqa: SIM115 (held open until folder_lock's block ends)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise OutputBusyError("another braincode command is writing this folder", path=path,
                                  expected="one writer per output folder", found=f"the lock {lock} held by {holder}",
                                  fix="wait for it to finish, or choose another --out") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            handle.truncate()
            return handle
        handle.close()


@contextmanager
def output_folder(path: str | Path, *, command: str, args: Mapping[str, object] | None = None) -> Iterator[Path]:
    """Write a command's outputs into a temporary sibling folder that replaces ``path`` as one unit on success.

    Inside the ``with`` block the caller writes into the folder it is given. On success, a manifest
    (``run.json``: command, arguments, package versions, start and end times, files and sizes) is added, and
    the folder replaces ``path``, whose previous contents are removed (a refit never mixes two runs). On an
    error nothing at ``path`` changes. A second writer to the same ``path`` gets :class:`OutputBusyError`.

    Parameters
    ----------
    path : str or Path
        The final output folder.
    command : str
        What wrote it, e.g. ``"braincode fit"``.
    args : mapping, optional
        The command's arguments (values are written with ``str`` when JSON cannot hold them).

    Examples
    --------
    >>> import tempfile, pathlib, json
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "fit"
    >>> with output_folder(out, command="demo") as tmp:
    ...     _ = (tmp / "old.txt").write_text("first run")
    >>> with output_folder(out, command="demo", args={"n": 2}) as tmp:
    ...     _ = (tmp / "scores.csv").write_text("r\\n0.5\\n")
    >>> sorted(p.name for p in out.iterdir())
    ['run.json', 'scores.csv']
    >>> json.loads((out / "run.json").read_text())["files"]
    {'scores.csv': 6}
    """
    path = Path(path)
    with folder_lock(path):
        tmp = _sibling(path, "tmp")
        tmp.mkdir()
        started = time.time()
        try:
            yield tmp
            manifest = {
                "command": command,
                "args": dict(args or {}),
                "argv": sys.argv,
                "versions": _versions(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "seconds": round(time.time() - started, 3),
                "files": _files(tmp),
            }
            (tmp / RUN_MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
            honour_umask(tmp)
            _replace_folder(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def _replace_folder(new: Path, path: Path) -> None:
    """Rename ``new`` onto ``path``; a previous ``path`` is moved aside first and then removed."""
    old = None
    if path.exists() or path.is_symlink():
        old = _sibling(path, "old")
        os.replace(path, old)
    os.replace(new, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
