"""Synthetic subjects shared by the data tests (generated once per session, never modified in place)."""

import shutil
from pathlib import Path

import pytest

from braincode.data.synthetic import make_synthetic


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> Path:
    """A tiny synthetic subject (20 train, 5 test images); copy it before breaking anything."""
    return make_synthetic(tmp_path_factory.mktemp("small"), n_train=20, n_test=5, seed=0)


@pytest.fixture(scope="session")
def default_root(tmp_path_factory) -> Path:
    """The default synthetic subject (600 train, 100 test images)."""
    return make_synthetic(tmp_path_factory.mktemp("default"))


@pytest.fixture
def copy_root(small_root, tmp_path) -> Path:
    """A private copy of the tiny subject, free to break."""
    return Path(shutil.copytree(small_root, tmp_path / "data"))
