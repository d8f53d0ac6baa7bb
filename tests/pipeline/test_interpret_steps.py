"""The caption and synthesize steps of a subject, and their sections of the report."""

import json

import pandas as pd
import yaml

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
