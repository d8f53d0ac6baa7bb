"""Safe .npy reading: numeric arrays without pickle, ROI mappings through the restricted unpickler."""

import os
import pickle

import numpy as np
import pytest

from braincode.data._npy import read_array, read_label_mapping, save_arrays_atomic
from braincode.errors import DataFormatError, MissingFileError


def _npy_with_payload(path, payload: bytes) -> None:
    """An object-dtype .npy header followed by an arbitrary pickle stream (what a hostile mapping file looks like)."""
    with open(path, "wb") as fp:
        np.lib.format.write_array_header_1_0(fp, {"descr": "|O", "fortran_order": False, "shape": ()})
        fp.write(payload)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "mapping",
    [
        {0: "Unknown", 1: "V1v", 2: "V1d"},
        {np.int64(0): "Unknown", np.int64(7): "hV4"},  # numpy-integer keys
    ],
)
def test_mapping_round_trip(tmp_path, mapping):
    path = tmp_path / "mapping_prf-visualrois.npy"
    np.save(path, mapping)
    loaded = read_label_mapping(path)
    assert loaded == {int(k): v for k, v in mapping.items()}
    assert all(type(k) is int for k in loaded)


@pytest.mark.parametrize("protocol", [2, 3])
def test_mapping_written_by_numpy1(tmp_path, protocol):
    """numpy 1.x (which made the challenge files) names the reconstructor numpy.core.multiarray."""
    payload = pickle.dumps(np.array({0: "Unknown", 1: "OFA"}, dtype=object), protocol=protocol)
    assert b"cnumpy._core.multiarray\n" in payload
    path = tmp_path / "mapping_floc-faces.npy"
    _npy_with_payload(path, payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    assert read_label_mapping(path) == {0: "Unknown", 1: "OFA"}


def test_mapping_plain_pickle_after_header(tmp_path):
    path = tmp_path / "mapping_streams.npy"
    _npy_with_payload(path, pickle.dumps({0: "Unknown", 1: "early"}, protocol=2))
    assert read_label_mapping(path) == {0: "Unknown", 1: "early"}


@pytest.mark.parametrize("protocol", [2, 4])
def test_mapping_refuses_code_execution(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "mapping_floc-faces.npy"
    _npy_with_payload(path, pickle.dumps(_Exploit(marker), protocol=protocol))
    with pytest.raises(DataFormatError) as info:
        read_label_mapping(path)
    message = str(info.value)
    assert (
        "mapping_floc-faces.npy" in message and "refusing to load global" in message and "system" in message
    )
    assert not marker.exists()


def test_mapping_refuses_object_array_holding_a_function(tmp_path):
    path = tmp_path / "mapping_floc-words.npy"
    np.save(path, np.array(os.system, dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="refusing to load global"):
        read_label_mapping(path)


@pytest.mark.parametrize(
    ("payload", "found"),
    [
        (["V1v", "V1d"], "found list"),
        ({"1": "V1v"}, "found a dict with entry ('1', 'V1v')"),
        ({1: 2}, "found a dict with entry (1, 2)"),
        ({True: "V1v"}, "found a dict with entry (True, 'V1v')"),
    ],
)
def test_mapping_refuses_anything_but_int_to_str(tmp_path, payload, found):
    path = tmp_path / "mapping_floc-bodies.npy"
    _npy_with_payload(path, pickle.dumps(payload))
    with pytest.raises(DataFormatError) as info:
        read_label_mapping(path)
    assert "mapping_floc-bodies.npy" in str(info.value) and found in str(info.value)


def test_mapping_refuses_numeric_array_and_missing_file(tmp_path):
    path = tmp_path / "mapping_floc-places.npy"
    np.save(path, np.arange(3))
    with pytest.raises(DataFormatError, match="does not hold a dict"):
        read_label_mapping(path)
    with pytest.raises(MissingFileError, match="mapping_nothing.npy"):
        read_label_mapping(tmp_path / "mapping_nothing.npy")


def test_read_array_checks(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(12, dtype=np.float32).reshape(3, 4))
    np.testing.assert_array_equal(read_array(good, what="x", fix="", mmap=True), np.arange(12).reshape(3, 4))

    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(
        DataFormatError, match=r"truncated.npy: the x is truncated; expected 48 bytes.*found 43"
    ):
        read_array(truncated, what="x", fix="")

    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"this is not numpy")
    with pytest.raises(DataFormatError, match="garbage.npy: the x is not a readable .npy file"):
        read_array(garbage, what="x", fix="")

    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="objects.npy: the x holds pickled Python objects"):
        read_array(objects, what="x", fix="")

    with pytest.raises(MissingFileError, match="absent.npy: the x is missing.*fix: get it"):
        read_array(tmp_path / "absent.npy", what="x", fix="get it")


def test_save_arrays_atomic_all_or_nothing(tmp_path):
    ok = tmp_path / "a.npy"
    with pytest.raises(FileNotFoundError):
        save_arrays_atomic({ok: np.ones(3), tmp_path / "no-such-dir" / "b.npy": np.ones(3)})
    assert list(tmp_path.iterdir()) == []  # neither file, no temporary left
    paths = save_arrays_atomic({ok: np.ones(3, np.float32)})
    assert paths == [ok] and [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_mapping_refuses_non_integer_numpy_scalars(tmp_path):
    path = tmp_path / "mapping_streams.npy"
    np.save(path, {np.float64(1.0): "early"})
    with pytest.raises(DataFormatError, match="refusing a numpy scalar of dtype dtype\\('float64'\\)"):
        read_label_mapping(path)


class _HugeArray:
    """Pickles as numpy's reconstructor asked for an array of ``shape`` (a few hundred bytes of pickle)."""

    def __init__(self, shape, dtype="O"):
        self.shape, self.dtype = shape, np.dtype(dtype)

    def __reduce__(self):
        return (np.ndarray.__reduce__(np.array(0))[0], (np.ndarray, self.shape, b"b"),
                (1, self.shape, self.dtype, False, [] if self.dtype.hasobject else b""))


@pytest.mark.parametrize(("shape", "dtype"), [((10**12,), "O"), ((2**40,), "f8"), ((3,), "O")])
def test_mapping_refuses_arrays_without_allocating_them(tmp_path, shape, dtype):
    """numpy's reconstructor would allocate the named shape (8 TB here) before any check could look at it."""
    import tracemalloc

    path = tmp_path / "mapping_floc-faces.npy"
    payload = pickle.dumps({0: _HugeArray(shape, dtype)}, protocol=3)
    assert len(payload) < 400
    _npy_with_payload(path, payload)
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=r"refusing a numpy array of shape \(\d+,\)"):
            read_label_mapping(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
