"""The caption and synthesize steps of a subject, and their sections of the report."""

import json

import pandas as pd
import pytest
import yaml

from braincode.errors import ConfigError
from braincode.pipeline.config import load_config
from braincode.pipeline.runner import run_subject

CONFIG = {
    "name": "interpret", "output": "out", "subjects": ["subj01"],
    "data": {"format": "synthetic", "root": "data", "n_train": 60, "n_test": 8, "seed": 0},
    "features": [{"model": "open_clip:tiny-vit@random", "layers": ["pooled"]}],
    "encoding": {"cv": 3, "alphas": [1, 100, 10000]},
    "caption": {"model": "minilm", "text": True, "top": 3},
    "synthesize": {"rois": ["FFA-1"], "n": 1, "steps": 3},
}


def test_caption_and_synthesize_steps_feed_the_report(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    config = load_config(path)
    ran = run_subject(config, "subj01")
    assert list(ran) == ["validate", "extract", "fit", "evaluate", "caption", "synthesize", "report"]
    subject = config.output / "subj01"
    captions = pd.read_csv(subject / "caption" / "captions.csv", keep_default_na=False)
    face = captions.loc[captions["roi"] == "FFA-1"].iloc[0]
    assert "face" in face["caption"]  # the synthetic face voxels' caption names their category
    assert len(face["top_images"].split(";")) == 3
    # scored on held-out images only, by a text model other than the caption bank's, beside a shuffled control
    assert set(captions["split"]) == {"validation"} and captions["beats_shuffled"].dtype == bool
    assert set(captions["decoder"]) == {"retrieval (baseline)"}
    record = json.loads((subject / "caption" / "captions.json").read_text())
    assert record["evaluation"]["scorer"] == "tfidf" != record["bank"]["model_id"]
    assert record["encoder"]["n_heldout"] == 12 and record["evaluation"]["n_stimuli"] == 12
    # the bank holds none of the subject's images (another synthetic draw: same names, other pictures)
    assert record["bank"]["subject_stimuli_in_bank"] == 0 and record["bank"]["n"] == 200
    sidecar = json.loads((subject / "synthesize" / "FFA-1" / "seed-00000000.json").read_text())
    assert sidecar["seed"] == 0
    html = (subject / "report" / "report.html").read_text()
    assert "floc-faces: FFA-1" in html and face["caption"] in html and "BrainDiVE" in html
    # nothing to redo on a second run
    assert not any(run_subject(config, "subj01").values())
    # editing the synthesize section re-runs synthesize and the report only
    path.write_text(yaml.safe_dump({**CONFIG, "synthesize": {**CONFIG["synthesize"], "n": 2}}))
    ran = run_subject(load_config(path), "subj01")
    assert [step for step, did in ran.items() if did] == ["synthesize", "report"]
    assert (subject / "synthesize" / "FFA-1" / "seed-00000001.png").exists()
    # and editing the caption section re-runs caption and the report only
    path.write_text(yaml.safe_dump({**CONFIG, "synthesize": {**CONFIG["synthesize"], "n": 2},
                                    "caption": {**CONFIG["caption"], "top": 2}}))
    ran = run_subject(load_config(path), "subj01")
    assert [step for step, did in ran.items() if did] == ["caption", "report"]


def test_caption_needs_a_bank_the_subject_never_saw(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "data": {"format": "algonauts", "root": "data"}}))
    with pytest.raises(ConfigError, match="bank of images the subject never saw"):
        load_config(path)
    path.write_text(yaml.safe_dump({**CONFIG, "caption": {"scorer": "minilm", "bank": "b", "holdout": 0.1}}))
    with pytest.raises(ConfigError, match="own text model"):
        load_config(path)
    path.write_text(yaml.safe_dump({**CONFIG, "caption": {"scorer": "minilm", "bank": "b", "text": False}}))
    assert load_config(path).caption.bank == tmp_path / "b"
    path.write_text(yaml.safe_dump({**CONFIG, "caption": {"holdout": 1.5}}))
    with pytest.raises(ConfigError, match="fraction"):
        load_config(path)
