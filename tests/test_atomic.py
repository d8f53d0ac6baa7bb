"""The output-folder contract: whole folders, one writer, the user's umask, no files from an earlier run."""

import json
import os
import stat
import threading

import numpy as np
import pytest

from braincode.atomic import RUN_MANIFEST, atomic_write, folder_lock, output_folder
from braincode.errors import OutputBusyError


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_honour_the_umask(tmp_path, umask_022):
    path = atomic_write(tmp_path / "a.npy", lambda p: np.save(p, np.zeros(3)))
    assert mode(path) == 0o644
    with output_folder(tmp_path / "out", command="test") as tmp:
        np.save(tmp / "x.npy", np.ones(2))
        (tmp / "sub").mkdir()
        atomic_write(tmp / "sub" / "s.csv", lambda p: p.write_text("r\n1\n"))
    out = tmp_path / "out"
    assert mode(out) == 0o755 and mode(out / "sub") == 0o755
    assert {mode(p) for p in out.rglob("*") if p.is_file()} == {0o644}


def test_a_refit_replaces_the_folder_and_a_failure_keeps_the_previous_one(tmp_path):
    out = tmp_path / "fit"
    with output_folder(out, command="fit", args={"readout": "ridge"}) as tmp:
        (tmp / "encoder.json").write_text("{}")
        (tmp / "scores.csv").write_text("ridge")
    with output_folder(out, command="fit", args={"readout": "routing"}) as tmp:
        (tmp / "scores.csv").write_text("routing")
    assert sorted(p.name for p in out.iterdir()) == [RUN_MANIFEST, "scores.csv"]  # no stale encoder.json
    manifest = json.loads((out / RUN_MANIFEST).read_text())
    assert manifest["args"] == {"readout": "routing"} and manifest["files"] == {"scores.csv": 7}
    assert manifest["command"] == "fit" and "numpy" in manifest["versions"]
    with pytest.raises(RuntimeError), output_folder(out, command="fit") as tmp:
        (tmp / "scores.csv").write_text("half")
        raise RuntimeError("killed")
    assert (out / "scores.csv").read_text() == "routing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]  # no temporary, no lock left


def test_a_second_writer_gets_a_clear_error_while_the_first_finishes(tmp_path):
    out = tmp_path / "fit"
    inside, release = threading.Event(), threading.Event()

    def first():
        with output_folder(out, command="first") as tmp:
            (tmp / "who").write_text("first")
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    busy = pytest.raises(OutputBusyError, match="another braincode command is writing this folder")
    with busy as err, output_folder(out, command="second"):
        pass
    assert str(out) in str(err.value) and f"pid {os.getpid()}" in str(err.value)
    release.set()
    thread.join()
    assert (out / "who").read_text() == "first"
    with folder_lock(out):  # free again
        pass


def test_owner_only_files_of_other_writers_get_the_umask_modes(tmp_path, umask_022):
    from safetensors.numpy import save_file

    path = atomic_write(tmp_path / "w.safetensors", lambda p: save_file({"w": np.zeros(2)}, str(p)))
    assert mode(path) == 0o644
    with output_folder(tmp_path / "out", command="test") as tmp:
        (tmp / "private").write_text("x")
        (tmp / "private").chmod(0o600)
    assert mode(tmp_path / "out" / "private") == 0o644
