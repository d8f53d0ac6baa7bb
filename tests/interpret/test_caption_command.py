"""`braincode caption` end to end on the synthetic subject: honest evaluation (held-out images, a bank without
the subject's stimuli, the shuffled control beside every score), ClipCap, retrieval baseline and LaVCa modes."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from braincode.commands import caption as caption_command
from braincode.commands import train_decoder
from braincode.data.synthetic import make_synthetic
from braincode.errors import ConfigError
from braincode.interpret.bank import load_bank
from braincode.interpret.decoders import RetrievalDecoder
from braincode.interpret.scuba import caption_voxels, project
from braincode.interpret.scuba_encoder import load_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cli(*argv: str, module=caption_command) -> int:
    parser = argparse.ArgumentParser(prog="braincode")
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic subject, and a captioned bank of 300 other images (drawn with another seed: none of the
    subject's). The bank's space is MiniLM on the captions, the offline stand-in for CLIP's joint space."""
    root = tmp_path_factory.mktemp("captions")
    make_synthetic(root / "data", n_train=250, n_test=5, image_size=32, seed=0)
    make_synthetic(root / "extra", n_train=300, n_test=1, image_size=32, seed=1)
    images = root / "bank_images"
    images.mkdir()
    table = pd.read_csv(root / "extra" / "subj01" / "captions.csv")
    table = table[table["image"].str.startswith("train")]
    for name in table["image"]:
        shutil.copy(root / "extra" / "subj01" / "training_split" / "training_images" / name, images / f"x{name}")
    table.assign(image="x" + table["image"]).to_csv(images / "captions.csv", index=False)
    assert _cli("bank", "--images", images, "--model", "minilm", "--from-captions", "--device", "cpu",
                "--cache", root / "cache", "--out", root / "bank") == 0
    return root


BASE = ("--encoder", "adamw", "--holdout", "0.2", "--evaluate", "--allow-same-scorer")


def _caption(root, method: str, *extra: str, base=BASE) -> pd.DataFrame:
    out = root / f"{method}-{'-'.join(a.replace('-', '') for a in map(str, extra) if '/' not in a)}.csv"
    assert _cli("caption", "--fit", root / "fit", "--method", method, "--bank", root / "bank", "--data",
                root / "data", "--subject", "subj01", "--cache", root / "cache", "--device", "cpu", "--out", out,
                *base, *extra) == 0
    return pd.read_csv(out, keep_default_na=False)


FAMILIES = ("floc-faces", "floc-bodies", "floc-places", "floc-words")


@pytest.mark.parametrize("method", ["scuba", "lavca"])
def test_face_voxels_get_face_captions_scored_on_heldout_images(synthetic, method):
    mode = ("--retrieval",) if method == "scuba" else ("--simplified",)
    voxels = _caption(synthetic, method, *mode)  # one caption per voxel (the encoder is fitted on first use)
    face = (voxels["roi:floc-faces"] != "").to_numpy()
    other = (voxels[[f"roi:{f}" for f in FAMILIES[1:]]] != "").any(axis=1).to_numpy()
    # LaVCa's sentence lists 5 keywords, best first: its first keyword is the voxel's main concept
    text = voxels["caption"] if method == "scuba" else voxels["keywords"].str.split(";").str[0]
    mentions = text.str.contains(r"\bfaces?\b").to_numpy()
    assert mentions[face].mean() > 0.9
    assert mentions[face].mean() > mentions[other].mean() + 0.3
    assert (voxels["split"] == "validation").all()
    # a 5-keyword template sentence names most categories, so it beats its control by less than a retrieved caption
    margin = 0.1 if method == "scuba" else 0.01
    assert voxels.loc[face, "spearman"].mean() > voxels.loc[face, "spearman_shuffled"].mean() + margin
    encoder = load_encoder(synthetic / "fit" / "scuba_encoder")
    assert len(encoder.heldout_ids) == 50 and "val_r" in voxels
    record = json.loads((synthetic / f"{method}-{mode[0][2:]}.json").read_text())
    assert record["evaluation"]["split"] == "validation" and record["evaluation"]["n_stimuli"] == 50
    assert record["bank"]["subject_stimuli_in_bank"] == 0
    assert ("baseline" in record["components"]["decoder"]) if method == "scuba" else \
        record["components"]["lavca"]["mode"] == "simplified"
    # per ROI, summarised from the voxels' captions: each names its own category
    rois = _caption(synthetic, method, *mode, *[a for f in FAMILIES for a in ("--roi", f)])
    first = rois.set_index("roi")["caption"].str.extract(r"\b(face|person|house|word)s?\b", expand=False)
    assert first.to_dict() == {"OFA": "face", "FFA-1": "face", "EBA": "person", "PPA": "house", "OPA": "house",
                               "VWFA-1": "word"}
    assert {"spearman", "spearman_shuffled", "beats_shuffled", "split"} <= set(rois.columns)


def test_top_voxels_and_a_tiny_clipcap_decoder(synthetic):
    """--top-voxels keeps the best-predicted voxels on held-out images; --decoder runs ClipCap (a tiny one trained
    on the bank here) on every voxel's projection."""
    assert _cli("train-decoder", "--bank", synthetic / "bank", "--out", synthetic / "decoder", "--prefix-length", "4",
                "--n-embd", "32", "--epochs", "3", "--lr", "3e-3", "--device", "cpu", module=train_decoder) == 0
    table = _caption(synthetic, "scuba", "--decoder", synthetic / "decoder", "--top-voxels", "20")
    encoder = load_encoder(synthetic / "fit" / "scuba_encoder")
    assert len(table) == 20 and table["val_r"].min() >= np.sort(encoder.val_r)[-20] - 1e-6
    assert table["caption"].str.len().gt(0).all()


def test_caption_command_refuses_circular_or_unnamed_evaluation(synthetic, tmp_path):
    with pytest.raises(ConfigError, match="no encoder in the --fit folder.*--data ROOT --subject S"):
        _cli("caption", "--fit", tmp_path, "--method", "scuba", "--bank", synthetic / "bank", "--out",
             tmp_path / "x.csv", "--retrieval")
    with pytest.raises(ConfigError, match="scored by the text model that chose them"):
        _caption(synthetic, "scuba", "--retrieval", base=BASE[:-1])
    with pytest.raises(ConfigError, match="decodes each voxel's projection with ClipCap.*--retrieval"):
        _caption(synthetic, "scuba", base=BASE[:-2])
    with pytest.raises(ConfigError, match="LaVCa as published needs.*--simplified"):
        _caption(synthetic, "lavca", base=BASE[:-2])
    with pytest.raises(ConfigError, match="no ROI named 'FFA-9'"):
        _caption(synthetic, "scuba", "--retrieval", "--roi", "FFA-9")
    # an encoder fitted on every training image leaves nothing held out: evaluation refuses, or labels circular
    args = ("--retrieval", "--holdout", "0", "--encoder", "ridge", "--evaluate", "--allow-same-scorer")
    root = synthetic
    out = tmp_path / "c.csv"
    common = ("caption", "--fit", tmp_path / "fit0", "--method", "scuba", "--bank", root / "bank", "--data",
              root / "data", "--subject", "subj01", "--device", "cpu", "--roi", "FFA-1", "--out", out)
    with pytest.raises(ConfigError, match="circular"):
        _cli(*common, *args)
    assert not out.exists()
    assert _cli(*common, *args, "--allow-training-eval") == 0
    assert (pd.read_csv(out)["split"] == "training (circular)").all()


def test_own_stimuli_in_the_bank_are_warned(synthetic, tmp_path, caplog):
    own = synthetic / "data" / "subj01" / "training_split" / "training_images"
    assert _cli("bank", "--images", own, "--model", "minilm", "--from-captions", "--device", "cpu",
                "--cache", synthetic / "cache", "--out", tmp_path / "own") == 0
    with caplog.at_level("WARNING"):
        assert _cli("caption", "--fit", synthetic / "fit", "--method", "scuba", "--bank", tmp_path / "own", "--data",
                    synthetic / "data", "--subject", "subj01", "--device", "cpu", "--retrieval", "--roi", "FFA-1",
                    "--out", tmp_path / "own.csv") == 0
    assert "the bank holds 250 of the subject's own stimuli" in caplog.text
    assert json.loads((tmp_path / "own.json").read_text())["bank"]["subject_stimuli_in_bank"] == 250


def test_the_face_check_fails_for_weights_that_ignore_the_voxel(synthetic):
    """Control for the first test: with the encoder's weight rows permuted across voxels, face-ROI voxels no
    longer get face captions more often than the others, so that test can fail."""
    _caption(synthetic, "scuba", "--retrieval", "--roi", "OFA")  # fits the encoder if needed
    encoder = load_encoder(synthetic / "fit" / "scuba_encoder")
    bank = load_bank(synthetic / "bank")
    permuted = encoder.coef[np.random.default_rng(0).permutation(len(encoder.coef))]
    captions = pd.Series(caption_voxels(project(permuted, bank, device="cpu"), RetrievalDecoder.from_bank(bank)))
    face = (encoder.voxels["roi:floc-faces"] != "").to_numpy()
    other = (encoder.voxels[[f"roi:{f}" for f in FAMILIES[1:]]] != "").any(axis=1).to_numpy()
    mentions = captions.str.contains(r"\bfaces?\b").to_numpy()
    assert mentions[face].mean() < mentions[other].mean() + 0.3
