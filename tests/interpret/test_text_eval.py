"""The LaVCa sentence metric: Spearman against scipy, a caption that fits beats its shuffled control, diversity."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from braincode.commands import caption as caption_command
from braincode.data.synthetic import make_synthetic
from braincode.errors import ConfigError, DataFormatError, ModelError
from braincode.interpret.bank import load_bank
from braincode.interpret.decoders import RetrievalDecoder
from braincode.interpret.scuba import caption_voxels, load_encoder, project
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
                              responses, n_shuffles=10, random_state=0)
    assert (table["spearman"] > 0.5).all()
    assert (table["spearman"] > table["spearman_shuffled"] + 0.3).all()
    # the score is the rank correlation of the MiniLM similarities: swapping captions swaps the scores' sign
    swapped = caption_scores(["a photo of a house", "a photo of a face", "a photo of a pet animal"], STIMULI,
                             responses)
    assert swapped[0] < 0 and swapped[1] < 0
    # same seed, same control
    again = evaluate_captions(table["caption"], STIMULI, responses, n_shuffles=10, random_state=0)
    np.testing.assert_array_equal(again["spearman_shuffled"], table["spearman_shuffled"])


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


# ------------------------------------------------------------------ end to end on synthetic data, through the CLI


def _cli(*argv: str) -> int:
    """Run one of this issue's sub-commands (``bank``, ``caption``) as ``braincode`` would."""
    parser = argparse.ArgumentParser(prog="braincode")
    caption_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic subject and a captioned bank: its training images plus 100 images drawn with another seed.

    The bank's embedding space is MiniLM on the captions (the offline stand-in for CLIP's joint space: no
    pretrained CLIP can be downloaded here), so embeddings carry the category content that the voxels encode.
    """
    root = tmp_path_factory.mktemp("captions")
    make_synthetic(root / "data", n_train=200, n_test=5, image_size=32, seed=0)
    make_synthetic(root / "extra", n_train=100, n_test=1, image_size=32, seed=1)
    images = root / "bank_images"
    images.mkdir()
    rows = []
    for tag, folder in (("a", root / "data"), ("b", root / "extra")):
        table = pd.read_csv(folder / "subj01" / "captions.csv")
        for name, caption in zip(table["image"], table["caption"]):
            if name.startswith("train"):
                shutil.copy(folder / "subj01" / "training_split" / "training_images" / name, images / f"{tag}-{name}")
                rows.append({"image": f"{tag}-{name}", "caption": caption})
    pd.DataFrame(rows).to_csv(images / "captions.csv", index=False)
    assert _cli("bank", "--images", images, "--model", "minilm", "--from-captions", "--device", "cpu",
                "--cache", root / "cache", "--out", root / "bank") == 0
    return root


def _caption(root, method: str, *extra: str) -> pd.DataFrame:
    out = root / f"{method}-{'-'.join(extra) or 'voxels'}.csv"
    assert _cli("caption", "--fit", root / "fit", "--method", method, "--bank", root / "bank", "--data",
                root / "data", "--subject", "subj01", "--cache", root / "cache", "--device", "cpu", "--evaluate",
                "--out", out, *extra) == 0
    return pd.read_csv(out, keep_default_na=False)


FAMILIES = ("floc-faces", "floc-bodies", "floc-places", "floc-words")


@pytest.mark.parametrize("method", ["scuba", "lavca"])
def test_face_voxels_get_face_captions_that_beat_the_shuffled_control(synthetic, method):
    voxels = _caption(synthetic, method)  # one caption per voxel (the encoder is fitted on first use)
    face = (voxels["roi:floc-faces"] != "").to_numpy()
    other = (voxels[[f"roi:{f}" for f in FAMILIES[1:]]] != "").any(axis=1).to_numpy()
    mentions = voxels["caption"].str.contains(r"\bfaces?\b").to_numpy()
    assert mentions[face].mean() > 0.9
    assert mentions[face].mean() > mentions[other].mean() + 0.3
    assert voxels.loc[face, "spearman"].mean() > voxels.loc[face, "spearman_shuffled"].mean() + 0.1
    # per ROI (mean projection / mean weights): each ROI's caption names its own category first
    rois = _caption(synthetic, method, *[a for f in FAMILIES for a in ("--roi", f)])
    first = rois.set_index("roi")["caption"].str.extract(r"\b(face|person|house|word)s?\b", expand=False)
    assert first.to_dict() == {"OFA": "face", "FFA-1": "face", "EBA": "person", "PPA": "house", "OPA": "house",
                               "VWFA-1": "word"}
    assert (rois["spearman"] > rois["spearman_shuffled"]).all()


def test_caption_command_bad_input(synthetic, tmp_path):
    with pytest.raises(ConfigError, match="no encoder in the --fit folder.*--data ROOT --subject S"):
        _cli("caption", "--fit", tmp_path, "--method", "scuba", "--bank", synthetic / "bank", "--out",
             tmp_path / "x.csv")
    assert _caption(synthetic, "scuba", "--roi", "FFA-1")["roi"].tolist() == ["FFA-1"]  # fits the encoder if needed
    with pytest.raises(ConfigError, match="no ROI or ROI family named 'FFA-9'.*check --roi"):
        _caption(synthetic, "scuba", "--roi", "FFA-9")
    assert not (synthetic / "scuba---roi-FFA-9.csv").exists()


def test_the_face_check_fails_for_weights_that_ignore_the_voxel(synthetic):
    """Control for the test above: with the encoder's weight rows permuted across voxels, face-ROI voxels no
    longer get face captions more often than the others, so that test can fail."""
    _caption(synthetic, "scuba", "--roi", "OFA")  # fits the encoder if needed
    encoder = load_encoder(synthetic / "fit")
    bank = load_bank(synthetic / "bank")
    permuted = encoder.coef[np.random.default_rng(0).permutation(len(encoder.coef))]
    captions = pd.Series(caption_voxels(project(permuted, bank, device="cpu"), RetrievalDecoder.from_bank(bank)))
    face = (encoder.voxels["roi:floc-faces"] != "").to_numpy()
    other = (encoder.voxels[[f"roi:{f}" for f in FAMILIES[1:]]] != "").any(axis=1).to_numpy()
    mentions = captions.str.contains(r"\bfaces?\b").to_numpy()
    assert mentions[face].mean() < mentions[other].mean() + 0.3
