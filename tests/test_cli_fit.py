"""`braincode fit` beyond the Algonauts layout and beyond one feature space: an NSD root, and banded ridge that
recovers which feature space drives which voxel."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
from nsd_fixture import SHAPE, write_nsd

from braincode.cli import main
from braincode.data import load_algonauts
from braincode.data.synthetic import make_synthetic
from braincode.features import FeatureStore
from braincode.features.design import FeatureSpec, extract_spaces


def test_fit_reads_an_nsd_root(tmp_path, capsys):
    write_nsd(tmp_path / "nsd")
    out = tmp_path / "fit"
    status = main(["--quiet", "fit", "--data", str(tmp_path / "nsd"), "--subject", "subj02", "--model",
                   "open_clip:tiny-vit@random", "--cv", "3", "--cache", str(tmp_path / "cache"), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("fit subj02: mean cross-validated r")
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert {"i", "j", "k", "r", "test_r", "noise_ceiling"} <= set(scores.columns)
    assert nib.load(out / "r.nii.gz").shape == SHAPE
    assert np.load(out / "pred_test.npy").shape[1] == len(scores)
    assert json.loads((out / "summary.json").read_text())["subject"] == "subj02"


def test_banded_ridge_recovers_which_space_drives_which_voxel(tmp_path, capsys):
    """Left-hemisphere voxels are a linear map of the image features, right-hemisphere ones of the caption
    features (plus noise): banded ridge's unique R^2 must point to the right space for each."""
    root = make_synthetic(tmp_path / "data", n_train=120, n_test=10, seed=4)
    ds = load_algonauts(root, "subj01")
    stimuli = {"train": ds["train"].stimuli}
    store = FeatureStore(tmp_path / "cache")
    vision = extract_spaces(stimuli, FeatureSpec("open_clip:tiny-vit@random"), store=store)["train"]["pooled"]
    text = extract_spaces(stimuli, FeatureSpec("minilm"), store=store, text=True)["train"]["pooled"]
    rng = np.random.default_rng(0)
    fmri = root / "subj01" / "training_split" / "training_fmri"
    for hemi, x in (("lh", vision), ("rh", text)):
        n_vox = np.load(fmri / f"{hemi}_training_fmri.npy").shape[1]
        z = (x - x.mean(0)) / (x.std(0) + 1e-8)
        signal = z @ rng.standard_normal((z.shape[1], n_vox))
        y = signal / signal.std(0) + 0.5 * rng.standard_normal(signal.shape)
        np.save(fmri / f"{hemi}_training_fmri.npy", y.astype(np.float32))
    out = tmp_path / "fit"
    status = main(["--quiet", "fit", "--data", str(root), "--subject", "subj01", "--model",
                   "open_clip:tiny-vit@random", "--text-features", "--banded", "--cv", "3",
                   "--cache", str(tmp_path / "cache"), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert {"unique_r2_pooled", "unique_r2_text", "shared_r2", "gamma_pooled", "gamma_text"} <= set(scores.columns)
    lh, rh = scores[scores["hemisphere"] == "lh"], scores[scores["hemisphere"] == "rh"]
    assert (lh["unique_r2_pooled"] > lh["unique_r2_text"]).mean() > 0.9
    assert (rh["unique_r2_text"] > rh["unique_r2_pooled"]).mean() > 0.9
    assert lh["gamma_pooled"].median() > 0.5 and rh["gamma_text"].median() > 0.5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["readout"] == "banded ridge" and summary["spaces"] == ["pooled", "text"]
    assert "variance partitioning" in summary["methods"]["unique_r2_text"]


def _images(folder, n):
    from PIL import Image

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder.parent / "stimuli.txt").write_text("".join(f"images/img{i}.png\n" for i in range(n)))


def test_fit_reads_a_nifti_folder_and_a_gifti_folder(tmp_path, capsys):
    n, rng = 16, np.random.default_rng(2)
    volume, surface = tmp_path / "volume", tmp_path / "surface"
    _images(volume / "images", n)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(rng.normal(size=(3, 3, 2, n)).astype(np.float32), affine), volume / "betas.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((3, 3, 2), np.uint8), affine), volume / "mask.nii.gz")
    _images(surface / "images", n)
    for hemi in ("lh", "rh"):
        arrays = [nib.gifti.GiftiDataArray(rng.normal(size=12).astype(np.float32)) for _ in range(n)]
        nib.save(nib.gifti.GiftiImage(darrays=arrays), surface / f"{hemi}.betas.gii")
    for folder, fmt, expected in ((volume, "volume", "r.nii.gz"), (surface, "surface", "lh.r.gii")):
        out = tmp_path / f"fit-{fmt}"
        status = main(["--quiet", "fit", "--data", str(folder), "--model", "open_clip:tiny-vit@random", "--cv", "2",
                       "--cache", str(tmp_path / "cache"), "--out", str(out)])
        assert status == 0, capsys.readouterr().err
        assert (out / expected).exists() and len(pd.read_csv(out / "scores.csv")) == (18 if fmt == "volume" else 24)
        assert json.loads((out / "summary.json").read_text())["subject"]
