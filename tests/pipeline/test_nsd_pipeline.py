"""An NSD subject through the pipeline's steps: volume maps and predictions in the data's own space."""

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from nsd_fixture import SHAPE, write_nsd

from braincode.pipeline.config import load_config
from braincode.pipeline.runner import run_subject


def test_nsd_subject_runs_banded_ridge_and_writes_volume_maps(tmp_path):
    write_nsd(tmp_path / "nsd")
    path = tmp_path / "nsd.yaml"
    path.write_text(yaml.safe_dump({
        "name": "nsd", "output": "out", "subjects": ["subj02"],
        "data": {"format": "nsd", "root": "nsd", "options": {"space": "func1pt8mm"}},
        "features": [{"model": "open_clip:tiny-vit@random", "layers": ["blocks.1", "pooled"], "grid": 2}],
        "encoding": {"cv": 3, "alphas": [1, 100], "banded": True},
    }))
    config = load_config(path)
    ran = run_subject(config, "subj02")
    assert all(ran.values()) and list(ran) == list(config.steps)
    fit = config.output / "subj02" / "fit"
    scores = pd.read_csv(fit / "scores.csv", keep_default_na=False)
    assert {"i", "j", "k", "r", "test_r", "noise_ceiling", "normalized_score"} <= set(scores.columns)
    # banded ridge over the two layers: each space's unique R^2 and the shared R^2 per voxel
    assert {"unique_r2_blocks.1", "unique_r2_pooled", "shared_r2", "gamma_pooled"} <= set(scores.columns)
    pred = np.load(fit / "pred_test.npy")
    assert pred.shape[1] == len(scores) and pred.dtype == np.float32
    r_map = nib.load(fit / "r.nii.gz")
    assert r_map.shape == SHAPE
    values = np.asarray(r_map.dataobj)
    ijk = scores[["i", "j", "k"]].to_numpy()
    np.testing.assert_allclose(values[tuple(ijk.T)], scores["r"], rtol=1e-6)
    assert np.isnan(values).sum() == np.prod(SHAPE) - len(scores)
    html = (config.output / "subj02" / "report" / "report.html").read_text()
    assert "r (axial slices)" in html and "fsaverage5" not in html
