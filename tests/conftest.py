"""Test-wide settings: offline model hubs, quiet progress bars, deterministic threads."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BRAINCODE_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
