"""The LaVCa sentence metric: Spearman against scipy, a caption that fits beats its shuffled control, diversity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from braincode.errors import DataFormatError, ModelError
from braincode.interpret.text_eval import (
    caption_scores,
    default_sentence_model_path,
    evaluate_captions,
    load_sentence_model,
    spearman_r,
    vocabulary_size,
)

STIMULI = ["a smiling face", "a large house", "a face of a man", "a small house in a street", "a dog on grass",
           "the face of a woman", "a tall building", "a cat asleep"]


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (40, 3)).astype(float)  # many ties
    b = rng.standard_normal((40, 3))
    expected = [spearmanr(a[:, i], b[:, i]).statistic for i in range(3)]
    np.testing.assert_allclose(spearman_r(a, b), expected, rtol=1e-10)


def test_fitting_caption_beats_shuffled_control():
    face = np.array([1.0 if "face" in s else 0.0 for s in STIMULI]) + np.linspace(0, 0.1, len(STIMULI))
    house = np.array([1.0 if "house" in s or "building" in s else 0.0 for s in STIMULI])
    animal = np.array([1.0 if "dog" in s or "cat" in s else 0.0 for s in STIMULI])
    responses = np.stack([face, house, animal], axis=1)
    table = evaluate_captions(["a photo of a face", "a photo of a house", "a photo of a pet animal"], STIMULI,
                              responses, split="validation", n_shuffles=10, random_state=0)
    assert (table["spearman"] > 0.5).all() and table["beats_shuffled"].all()
    assert (table["split"] == "validation").all()
    assert (table["spearman"] > table["spearman_shuffled"] + 0.3).all()
    # the score is the rank correlation of the MiniLM similarities: swapping captions swaps the scores' sign
    swapped = caption_scores(["a photo of a house", "a photo of a face", "a photo of a pet animal"], STIMULI,
                             responses)
    assert swapped[0] < 0 and swapped[1] < 0
    # same seed, same control
    again = evaluate_captions(table["caption"], STIMULI, responses, split="validation", n_shuffles=10, random_state=0)
    np.testing.assert_array_equal(again["spearman_shuffled"], table["spearman_shuffled"])


def test_a_score_below_its_shuffled_control_is_flagged(caplog):
    """A generic caption that fits its voxel worse than the other voxels' captions do is flagged, and logged."""
    face = np.array([1.0 if "face" in s else 0.0 for s in STIMULI])
    house = np.array([1.0 if "house" in s or "building" in s else 0.0 for s in STIMULI])
    responses = np.stack([face, house, house + 0.01 * np.arange(len(STIMULI))], axis=1)
    with caplog.at_level("WARNING"):
        table = evaluate_captions(["a photo of a face", "a photo of a face", "a photo of a house"], STIMULI,
                                  responses, split="test", n_shuffles=10, random_state=0)
    assert table["beats_shuffled"].tolist() == [True, False, True]
    assert table.loc[1, "spearman"] < table.loc[1, "spearman_shuffled"]
    assert "1 of 3 captions do not beat their shuffled-caption control" in caplog.text


def test_model_by_path_gives_the_same_scores():
    responses = np.arange(len(STIMULI), dtype=float)[:, None]
    default = caption_scores(["a face"], STIMULI, responses)
    by_path = caption_scores(["a face"], STIMULI, responses, model=load_sentence_model(default_sentence_model_path()))
    np.testing.assert_allclose(default, by_path)


def test_vocabulary_size():
    assert vocabulary_size([]) == 0
    assert vocabulary_size(["A face, a FACE.", "the word \"ABC\" don't"]) == 6  # a face the word abc don't


def test_bad_input(tmp_path):
    with pytest.raises(DataFormatError, match=r"expected an array of shape \(n_stimuli=8, n_voxels=2\).*found \(8, 3\)"):
        caption_scores(["a", "b"], STIMULI, np.zeros((8, 3)))
    with pytest.raises(ModelError, match="not a sentence-transformers model folder"):
        load_sentence_model(tmp_path)
