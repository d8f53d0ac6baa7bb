"""The Examples sections of braincode.features run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["hooks", "model_id", "pooling", "registry", "store", "text", "weights"]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    result = doctest.testmod(
        importlib.import_module(f"braincode.features.{name}"), optionflags=doctest.ELLIPSIS
    )
    assert result.attempted > 0 and result.failed == 0
