"""Test-wide settings: offline model hubs, quiet progress bars; shared fixture writers importable."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BRAINCODE_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# shared fixture writers (e.g. nsd_fixture) are plain modules beside this file
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Module-wide single torch thread (tiny models); use with ``pytest.mark.usefixtures("one_torch_thread")``."""
    from threads import single_thread

    with single_thread():
        yield
