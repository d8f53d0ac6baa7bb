"""Synthetic ground truth: determinism, layout, and that the planted signals are really in images and responses."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from braincode.data.algonauts import load_algonauts
from braincode.data.synthetic import CATEGORIES, load_truth, make_synthetic
from braincode.encoding.metrics import pearson_r
from braincode.errors import ConfigError, MissingFileError


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(small_root, tmp_path):
    again = make_synthetic(tmp_path / "again", n_train=20, n_test=5, seed=0)
    assert _digest(again) == _digest(small_root)
    other = _digest(make_synthetic(tmp_path / "other", n_train=20, n_test=5, seed=1))
    differing = [name for name, digest in _digest(small_root).items() if other[name] != digest]
    assert "subj01/training_split/training_fmri/lh_training_fmri.npy" in differing
    assert sum(name.endswith(".png") for name in differing) >= 20  # images follow the seed too


def test_layout_and_truth_files(small_root):
    subj = small_root / "subj01"
    names = sorted(p.name for p in (subj / "training_split" / "training_images").iterdir())
    assert names[0] == "train-0001_nsd-00001.png" and len(names) == 20
    assert min(p.name for p in (subj / "test_split" / "test_images").iterdir()) == "test-0001_nsd-00021.png"
    assert not list(small_root.glob(".synthetic-*"))  # no staging folder left behind
    truth = load_truth(small_root, "subj01")
    assert truth.train_clean.shape == (20, 520) and truth.test_clean.shape == truth.test_fmri.shape == (
        5,
        520,
    )
    assert list(truth.voxels.columns) == ["hemisphere", "vertex", "kind", "category", "roi", "prf_x", "prf_y",
                                          "prf_sigma", "noise_sd", "noise_ceiling"]  # fmt: skip
    lh, rh = truth.voxels.hemisphere == "lh", truth.voxels.hemisphere == "rh"
    assert 300 <= len(truth.voxels) <= 600 and lh.sum() == rh.sum()
    assert (truth.voxels["vertex"] < 163842).all()
    assert truth.voxels.groupby("hemisphere")["vertex"].apply(lambda v: v.is_monotonic_increasing).all()
    # retinotopy: each hemisphere sees the opposite half of the image; ventral ROIs the upper half
    prf = truth.voxels[truth.voxels.kind == "prf"]
    assert (prf.loc[prf.hemisphere == "lh", "prf_x"] > 0.5).all() and (
        prf.loc[prf.hemisphere == "rh", "prf_x"] < 0.5
    ).all()
    assert (prf.loc[prf.roi.str.match(r"V\dv"), "prf_y"] < 0.5).all()
    assert (prf.loc[prf.roi.str.match(r"V\dd"), "prf_y"] > 0.5).all()
    # the measured training fMRI is the clean signal plus noise, columns in the loaded order
    measured = load_algonauts(small_root, 1)["train"].responses.data
    none = (truth.voxels.kind == "none").to_numpy()
    np.testing.assert_array_equal(truth.train_clean[:, none], 0)
    assert np.abs(measured - truth.train_clean).std() > 0.5


def test_category_voxels_follow_their_category(default_root):
    ds = load_algonauts(default_root, 1)
    truth = load_truth(default_root, 1)
    names = [p.name for p in ds["train"].stimuli.paths]
    present = pd.crosstab(truth.objects.image, truth.objects.category).reindex(names, fill_value=0) > 0
    voxels = truth.voxels
    for category in CATEGORIES:
        cols = np.flatnonzero(((voxels.kind == "category") & (voxels.category == category)).to_numpy())
        assert cols.size >= 20
        for other in CATEGORIES:
            target = np.repeat(present[other].to_numpy(float)[:, None], cols.size, axis=1)
            r = pearson_r(truth.train_clean[:, cols], target)
            if other == category:
                assert r.min() > 0.8
            else:
                assert np.abs(r).max() < 0.3
    # captions say what is there
    captions = dict(zip(names, ds["train"].stimuli.captions))
    for image in truth.objects.loc[truth.objects.category == "place", "image"].head(20):
        assert "house" in captions[image]
    for image in present.index[~present.any(axis=1)][:20]:
        assert "nothing on it" in captions[image]


def test_prf_voxels_follow_contrast_in_their_field(default_root):
    ds = load_algonauts(default_root, 1)
    truth = load_truth(default_root, 1)
    gray = np.stack(
        [np.asarray(Image.open(p).convert("L"), dtype=float) / 255 for p in ds["train"].stimuli.paths]
    )
    gy, gx = np.gradient(gray, axis=(1, 2))
    energy = (gx**2 + gy**2).reshape(len(gray), -1)
    centres = (np.arange(gray.shape[1]) + 0.5) / gray.shape[1]
    prf = truth.voxels[truth.voxels.kind == "prf"]

    def field(x, y, sigma):
        g = np.exp(-((centres[None, :] - x[:, None, None]) ** 2 + (centres[:, None] - y[:, None, None]) ** 2)
                   / (2 * sigma[:, None, None] ** 2))  # fmt: skip
        return energy @ g.reshape(len(x), -1).T

    x, y, s = (prf[c].to_numpy() for c in ("prf_x", "prf_y", "prf_sigma"))
    clean = truth.train_clean[:, prf.index]
    own = pearson_r(clean, field(x, y, s))
    mirrored = pearson_r(clean, field(1 - x, 1 - y, s))  # the same field reflected through the centre
    assert np.median(own) > 0.85 and own.min() > 0.6
    assert np.median(mirrored) < 0.3


def test_noise_ceiling_below_one(default_root):
    truth = load_truth(default_root, 1)
    measured = load_algonauts(default_root, 1)["train"].responses.data
    voxels = truth.voxels
    np.testing.assert_allclose((measured - truth.train_clean).std(0), voxels.noise_sd, rtol=0.15)
    responsive = (voxels.kind != "none").to_numpy()
    ceiling = pearson_r(truth.test_clean[:, responsive], truth.test_fmri[:, responsive]) ** 2
    assert 0.3 < ceiling.mean() < 0.7
    np.testing.assert_allclose(ceiling.mean(), voxels.noise_ceiling[responsive].mean(), atol=0.1)
    quiet = load_truth(make_synthetic(default_root.parent / "quiet", n_train=20, n_test=50, noise=0.1), 1)
    responsive = (quiet.voxels.kind != "none").to_numpy()
    assert (pearson_r(quiet.test_clean[:, responsive], quiet.test_fmri[:, responsive]) ** 2).min() > 0.95


def test_refuses_bad_arguments(small_root, tmp_path):
    with pytest.raises(
        ConfigError, match="a different dataset already exists.*'n_train': 21.*overwrite=True"
    ):
        make_synthetic(small_root, n_train=21, n_test=5)
    with pytest.raises(ConfigError, match="n_train is out of range"):
        make_synthetic(tmp_path, n_train=0)
    with pytest.raises(ConfigError, match="image_size is out of range"):
        make_synthetic(tmp_path, image_size=8)
    with pytest.raises(ConfigError, match="noise is out of range"):
        make_synthetic(tmp_path, noise=float("nan"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MissingFileError, match="found subjects \\['subj01'\\]"):
        load_truth(small_root, 2)


def test_reuse_and_overwrite(tmp_path):
    make_synthetic(tmp_path, n_train=10, n_test=3, seed=0)
    before = _digest(tmp_path)
    stamp = (tmp_path / "subj01" / "captions.csv").stat().st_mtime_ns
    assert make_synthetic(tmp_path, n_train=10, n_test=3, seed=0) == tmp_path  # same parameters: reused
    assert _digest(tmp_path) == before and (tmp_path / "subj01" / "captions.csv").stat().st_mtime_ns == stamp
    make_synthetic(tmp_path, n_train=12, n_test=3, seed=0, overwrite=True)
    assert load_algonauts(tmp_path, 1)["train"].responses.shape[0] == 12
    assert load_truth(tmp_path, 1).train_clean.shape[0] == 12
