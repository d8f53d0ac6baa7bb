"""Safe readers and atomic writers for ``.npy`` files.

Numeric arrays are read with ``allow_pickle=False``. The only pickled content braincode reads is an Algonauts
ROI mapping (``mapping_<family>.npy``: a dict of int label -> str name saved with ``numpy.save``); it is read with
:class:`RestrictedUnpickler`, which refuses every global except the few numpy constructors that such a file needs,
and rebuilds no numpy array at all: the one array such a file holds (the 0-d object array wrapping the dict) is
unwrapped without allocating, and any other array is refused before memory is reserved for it.
"""

from __future__ import annotations

import io
import os
import pickle
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from braincode.errors import DataFormatError, MissingFileError

try:  # numpy >= 2
    from numpy._core.multiarray import scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar  # type: ignore[no-redef]


def _integer_scalar(dtype: np.dtype, data: bytes = b"") -> int:
    """Rebuild a pickled numpy scalar, but only an integer one (dict keys saved as ``np.int64``)."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu" or not isinstance(data, bytes):
        raise pickle.UnpicklingError(
            f"refusing a numpy scalar of dtype {dtype!r}: only integer labels allowed"
        )
    return int(scalar(dtype, data))


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it (array bytes stored as latin-1 text), and nothing more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than of a str to latin-1")
    return text.encode("latin1")


class _WrappedObject:
    """Stands in for the one array a mapping file may hold: the 0-d object array that ``numpy.save`` wraps a dict in.

    ``numpy``'s own reconstructor would allocate an array of whatever shape the pickle names (gigabytes for a few
    bytes of pickle); this placeholder allocates nothing and accepts, through the pickle's BUILD step, only the
    state of a 0-d object array, whose single item it keeps.
    """

    def __init__(self) -> None:
        self.item: Any = None

    def __setstate__(self, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) == 5
        shape, dtype, data = (state[1], state[2], state[4]) if ok else (None, None, None)
        if not (ok and shape == () and isinstance(dtype, np.dtype) and dtype.hasobject
                and isinstance(data, list) and len(data) == 1):
            raise pickle.UnpicklingError(
                f"refusing a numpy array of shape {shape} and dtype {dtype}: a mapping file holds only a dict"
            )
        self.item = data[0]


def _ndarray_reconstruct(subtype: type, shape: Any, dtype: Any) -> _WrappedObject:
    """Allow ``numpy``'s array reconstructor only as the placeholder :class:`_WrappedObject` (never allocates)."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild an array of class {subtype!r}")
    return _WrappedObject()


#: The globals a ``numpy.save``-d dict may reference (numpy 1.x and 2.x module names, pickle protocols 2-5), and
#: what each becomes.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy.core.multiarray", "scalar"): _integer_scalar,
    ("numpy._core.multiarray", "scalar"): _integer_scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers; it never imports, calls or allocates anything else.

    ``find_class`` accepts only numpy's array reconstructor (as a placeholder that unwraps a 0-d object array and
    refuses any other array, whatever its size, without allocating it), ``numpy.dtype``, integer numpy scalars
    (dicts whose keys were numpy integers) and latin-1 ``_codecs.encode`` (how protocol 2 stores bytes), each
    checked before it runs; any other global - ``os.system``, ``builtins.eval``, a class of any module - is
    refused.

    Examples
    --------
    >>> import io, pickle
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps({1: "V1v"}))).load()
    {1: 'V1v'}
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(print))).load()
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: refusing to load global 'builtins.print': only a dict of int -> str is allowed
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': only a dict of int -> str is allowed"
            ) from None


def _require_file(path: Path, what: str, fix: str) -> None:
    if not path.is_file():
        raise MissingFileError(
            f"the {what} is missing", path=path, expected="a .npy file", found="nothing", fix=fix
        )


def _read_header(fp: io.BufferedReader, path: Path, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fp)
        if version in ((2, 0), (3, 0)):
            return np.lib.format.read_array_header_2_0(fp)
        raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        raise DataFormatError(
            f"the {what} is not a readable .npy file",
            path=path,
            expected="a file written by numpy.save",
            found=f"{type(exc).__name__}: {exc}",
            fix="re-download or re-create the file; it is corrupt or not a .npy file",
        ) from exc


def read_array(path: str | Path, *, what: str, fix: str, mmap: bool = False) -> np.ndarray:
    """Read a numeric ``.npy`` array without pickle, checking that the file holds all of its data.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file.
    what : str
        What the file is, for error messages (e.g. ``"left-hemisphere training fMRI"``).
    fix : str
        How to fix a missing file, for the error message.
    mmap : bool, default False
        Memory-map the data read-only instead of reading it into memory (for large response files).

    Returns
    -------
    ndarray
        The array, with the dtype stored in the file.

    Raises
    ------
    MissingFileError
        When the file does not exist.
    DataFormatError
        When the file is not a ``.npy`` file, is truncated, or holds a pickled (object) array.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
    >>> np.save(p, np.arange(3.0))
    >>> read_array(p, what="test array", fix="").tolist()
    [0.0, 1.0, 2.0]
    """
    path = Path(path)
    _require_file(path, what, fix)
    with open(path, "rb") as fp:
        shape, _, dtype = _read_header(fp, path, what)
        offset = fp.tell()
    if dtype.hasobject:
        raise DataFormatError(
            f"the {what} holds pickled Python objects, not numbers",
            path=path,
            expected="a numeric array (float or int)",
            found=f"dtype {dtype}",
            fix="save the data as a numeric array, e.g. np.save(path, np.asarray(x, dtype=np.float32))",
        )
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    present = path.stat().st_size - offset
    if present < needed:
        raise DataFormatError(
            f"the {what} is truncated",
            path=path,
            expected=f"{needed} bytes of data for an array of shape {shape} and dtype {dtype}",
            found=f"{present} bytes",
            fix="the copy is incomplete; re-download or re-create the file",
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise DataFormatError(
            f"the {what} cannot be read",
            path=path,
            expected="a file written by numpy.save",
            found=f"{type(exc).__name__}: {exc}",
            fix="re-download or re-create the file",
        ) from exc


def _is_label(key: object, name: object) -> bool:
    return isinstance(key, int) and not isinstance(key, bool) and isinstance(name, str)


def read_label_mapping(path: str | Path, *, fix: str = "re-download the ROI masks") -> dict[int, str]:
    """Read an Algonauts ROI mapping file (a pickled dict label -> name) without executing any code.

    Parameters
    ----------
    path : str or Path
        A ``mapping_<family>.npy`` file as written by ``numpy.save(path, {0: "Unknown", 1: "V1v", ...})``
        (a 0-d object array holding the dict); a plain pickle of the dict after the ``.npy`` header is accepted too.
    fix : str
        How to fix a missing file, for the error message.

    Returns
    -------
    dict of int to str

    Raises
    ------
    MissingFileError
        When the file does not exist.
    DataFormatError
        When the file is corrupt, references any global other than numpy's array constructors (e.g. a pickled
        ``os.system``), or does not hold a dict of int -> str.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "mapping_floc-faces.npy"
    >>> np.save(p, {0: "Unknown", 1: "OFA", 2: "FFA-1"})
    >>> read_label_mapping(p)
    {0: 'Unknown', 1: 'OFA', 2: 'FFA-1'}
    """
    path = Path(path)
    what = "ROI mapping"
    _require_file(path, what, fix)
    with open(path, "rb") as fp:
        shape, _, dtype = _read_header(fp, path, what)
        if not dtype.hasobject:
            raise DataFormatError(
                f"the {what} does not hold a dict",
                path=path,
                expected="a pickled dict of int label -> str name (numpy.save of a dict)",
                found=f"a numeric array of shape {shape} and dtype {dtype}",
                fix="save the mapping with np.save(path, {0: 'Unknown', 1: 'name', ...})",
            )
        try:
            obj = RestrictedUnpickler(fp).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise DataFormatError(
                f"the {what} cannot be read safely",
                path=path,
                expected="a pickled dict of int label -> str name and nothing else",
                found=f"{type(exc).__name__}: {exc}",
                fix="re-download the file; never load it with allow_pickle=True if it came from elsewhere",
            ) from exc
    if isinstance(obj, _WrappedObject):
        obj = obj.item
    bad = [(k, v) for k, v in obj.items() if not _is_label(k, v)] if isinstance(obj, dict) else None
    if bad is None or bad:
        found = type(obj).__name__ if bad is None else f"a dict with entry {bad[0]!r}"
        raise DataFormatError(
            f"the {what} is not a dict of int -> str",
            path=path,
            expected="a dict such as {0: 'Unknown', 1: 'V1v'}",
            found=found,
            fix="re-download the file or re-create it with np.save(path, {label: name, ...})",
        )
    return dict(obj)


def save_arrays_atomic(arrays: dict[Path, Any]) -> list[Path]:
    """Write several ``.npy`` files all-or-nothing: every array goes to a temporary file first, then all are renamed.

    A reader never sees a half-written file, and a failure while writing leaves nothing behind. Dicts and other
    objects are saved pickled (as ``numpy.save`` does), which is how Algonauts ROI mappings are stored.

    Parameters
    ----------
    arrays : dict of Path to array-like
        Destination file -> content. Parent folders must exist.

    Returns
    -------
    list of Path
        The destination files, in the order given.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> paths = save_arrays_atomic({d / "a.npy": np.ones(2, np.float32), d / "b.npy": {1: "V1v"}})
    >>> np.load(paths[0]).dtype, read_label_mapping(paths[1])
    (dtype('float32'), {1: 'V1v'})
    """
    temps: dict[Path, Path] = {}
    try:
        for path, array in arrays.items():
            path = Path(path)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            temps[path] = tmp
            with open(tmp, "xb") as fp:
                np.save(fp, array, allow_pickle=not isinstance(array, np.ndarray))
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return list(temps)
