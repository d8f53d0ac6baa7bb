"""A pipeline whose encoding is a token readout: fitted on one block's tokens, its r labelled validation."""

import json

import pandas as pd
import pytest
import yaml

from braincode.errors import ConfigError
from braincode.pipeline.config import load_config
from braincode.pipeline.runner import run_subject

CONFIG = {
    "name": "tokens", "output": "out", "subjects": ["subj01"],
    "data": {"format": "synthetic", "root": "data", "n_train": 60, "n_test": 8, "seed": 0},
    "features": [{"model": "open_clip:tiny-vit@random", "layers": ["blocks.1"]}],
    "encoding": {"readout": "factorized", "epochs": 3},
    "steps": ["validate", "extract", "fit", "evaluate"],
}


def test_factorized_readout_fits_and_scores_on_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    config = load_config(path)
    assert list(run_subject(config, "subj01")) == CONFIG["steps"]
    fit = config.output / "subj01" / "fit"
    summary = json.loads((fit / "summary.json").read_text())
    assert "validation" in summary["methods"]["r"]
    assert (fit / "readout" / "config.json").is_file()
    scores = pd.read_csv(config.output / "subj01" / "evaluate" / "scores.csv")
    assert {"r", "r_truth"} <= set(scores.columns) and scores["r"].notna().all()


def test_token_readout_needs_a_block_layer(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "features": [{"model": "open_clip:tiny-vit@random"}]}))
    with pytest.raises(ConfigError, match="reads the tokens of a block"):
        load_config(path)
    path.write_text(yaml.safe_dump({**CONFIG, "encoding": {"readout": "routing", "preset": "huge"}}))
    with pytest.raises(ConfigError, match="preset"):
        load_config(path)
