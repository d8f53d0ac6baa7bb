"""Honest caption evaluation: held-out stimuli only, an independent scorer, labelled scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braincode.data.core import Stimuli
from braincode.errors import ConfigError
from braincode.interpret.evaluation import CIRCULAR, check_heldout, check_scorer, heldout_stimuli
from braincode.interpret.scuba_encoder import fit_encoder


def test_training_stimuli_are_refused_or_flagged(caplog):
    with pytest.raises(ConfigError, match="circular.*2 of 3 stimuli in the encoder's training set.*--holdout"):
        check_heldout(["a", "b", "z"], ["a", "b", "c"])
    with caplog.at_level("WARNING"):
        assert check_heldout(["a", "z"], ["a", "b"], allow_training=True) == CIRCULAR
    assert "circular" in caplog.text
    assert check_heldout(["y", "z"], ["a", "b"], split="test") == "test"


def test_scorer_must_differ_from_the_model_that_chose_the_captions():
    with pytest.raises(ConfigError, match="scored by the text model that chose them"):
        check_scorer("minilm", "minilm")
    check_scorer("hf:minilm", "minilm", allow_same=True)
    check_scorer("open_clip:ViT-B-32@openai", "minilm")
    check_scorer(None, "minilm")


class _Split:
    def __init__(self, n: int, captions: bool = True) -> None:
        self.stimuli = Stimuli(ids=[f"s{i}" for i in range(n)], captions=[f"c{i}" for i in range(n)] if captions
                               else None)
        self.responses = type("R", (), {"data": np.arange(n * 2, dtype=np.float32).reshape(n, 2)})()


def test_heldout_stimuli_are_those_the_encoder_never_saw():
    split = _Split(20)
    x = np.random.default_rng(0).standard_normal((20, 3))
    encoder = fit_encoder(x, split.responses.data, pd.DataFrame({"v": [0, 1]}), ids=split.stimuli.ids, holdout=0.25,
                          method="ridge", alphas=[1.0], cv=2, device="cpu")
    held = heldout_stimuli(split, encoder)
    assert held.split == "validation" and set(held.ids) == set(encoder.heldout_ids) and len(held.ids) == 5
    np.testing.assert_array_equal(held.responses, split.responses.data[held.index])
    assert held.captions == tuple(f"c{i}" for i in held.index)
    # an encoder fitted on every stimulus has nothing held out: refused, or circular when allowed
    full = fit_encoder(x, split.responses.data, pd.DataFrame({"v": [0, 1]}), ids=split.stimuli.ids, method="ridge",
                       alphas=[1.0], cv=2, device="cpu")
    with pytest.raises(ConfigError, match="circular"):
        heldout_stimuli(split, full)
    assert heldout_stimuli(split, full, allow_training=True).split == CIRCULAR
    with pytest.raises(ConfigError, match="needs a caption per stimulus"):
        heldout_stimuli(_Split(20, captions=False), encoder)
