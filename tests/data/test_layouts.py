"""load_subject: one dispatcher over the Algonauts, NSD, NIfTI-folder and surface-folder layouts; fit checks."""

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nsd_fixture import write_nsd

from braincode.data import load_algonauts, load_nifti, load_nsd, load_surface
from braincode.data.checks import check_fittable, integer_valued, min_samples, require_captions
from braincode.data.layouts import detect_format, load_subject, validate_subject
from braincode.data.synthetic import make_synthetic
from braincode.errors import ConfigError, DataFormatError, MissingFileError

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _same(a, b):
    assert a.subject == b.subject and a.space == b.space and sorted(a.splits) == sorted(b.splits)
    pd.testing.assert_frame_equal(a.voxels, b.voxels)
    for name in a.splits:
        assert a[name].stimuli.ids == b[name].stimuli.ids
        if a[name].responses is not None:
            np.testing.assert_array_equal(a[name].responses.data, b[name].responses.data)


def test_algonauts_root_and_subject_folder(small_root):
    assert detect_format(small_root) == "algonauts"
    direct = load_algonauts(small_root, 1)
    for root, subject in ((small_root, None), (small_root, "subj01"), (small_root / "subj01", None)):
        ds = load_subject(root, subject)
        _same(ds, direct)
        assert ds.meta["format"] == "algonauts"
        assert ds.meta["source"] == small_root / "subj01" / "training_split" / "training_images"
        assert ds.meta["captions_path"] == small_root / "subj01" / "captions.csv"


def test_nsd_root(tmp_path):
    write_nsd(tmp_path)
    assert detect_format(tmp_path) == "nsd"
    ds = load_subject(tmp_path, format="nsd", images=False)  # the only subject found: subj02
    _same(ds, load_nsd(tmp_path, 2, images=False))
    assert ds.meta["format"] == "nsd" and ds.meta["source"].name == "betas_fithrf_GLMdenoise_RR"
    surface = load_subject(tmp_path, 2, space="fsaverage", images=False)
    _same(surface, load_nsd(tmp_path, 2, space="fsaverage", images=False))


def _volume_folder(folder, n=9):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    (folder / "rois").mkdir()
    betas = rng.normal(size=(3, 4, 2, n)).astype(np.float32)
    nib.save(nib.Nifti1Image(betas[..., :5], AFFINE), folder / "betas_01.nii.gz")
    nib.save(nib.Nifti1Image(betas[..., 5:], AFFINE), folder / "betas_02.nii.gz")
    nib.save(nib.Nifti1Image((rng.uniform(size=(3, 4, 2)) > 0.3).astype(np.uint8), AFFINE), folder / "mask.nii.gz")
    nib.save(nib.Nifti1Image(rng.integers(0, 4, (3, 4, 2)).astype(np.int16), AFFINE),
             folder / "rois" / "floc-places.nii.gz")
    (folder / "rois" / "mine.ctab").write_text("1 blob\n2 spot\n")
    nib.save(nib.Nifti1Image(rng.integers(0, 3, (3, 4, 2)).astype(np.int16), AFFINE), folder / "rois" / "mine.nii.gz")
    names = [f"img{i}.png" for i in range(n)]
    (folder / "stimuli.txt").write_text("\n".join(f"images/{m}" for m in names) + "\n")
    pd.DataFrame({"image": names, "caption": [f"picture {i}" for i in range(n)]}).to_csv(folder / "captions.csv",
                                                                                         index=False)
    return betas


def test_nifti_folder_equals_load_nifti(tmp_path):
    folder = tmp_path / "subjA"
    _volume_folder(folder)
    assert detect_format(tmp_path, "subjA") == "volume"
    ds = load_subject(tmp_path, "subjA")
    direct = load_nifti(sorted(folder.glob("betas_*.nii.gz")), folder / "mask.nii.gz",
                        [folder / "images" / f"img{i}.png" for i in range(9)],
                        rois={"floc-places": folder / "rois" / "floc-places.nii.gz",
                              "mine": folder / "rois" / "mine.nii.gz"},
                        roi_labels={"mine": {1: "blob", 2: "spot"}}, subject="subjA")
    _same(ds, direct)
    assert ds.roi_families == ["floc-places", "mine"] and set(ds.voxels["roi:mine"]) <= {"", "blob", "spot"}
    assert ds["train"].stimuli.captions[3] == "picture 3"
    assert ds.meta["format"] == "volume" and ds.meta["captions_path"] == folder / "captions.csv"


def test_surface_folder_equals_load_surface(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "rois").mkdir()
    data = {}
    for hemi in ("lh", "rh"):
        data[hemi] = rng.normal(size=(10, 1, 1, 8)).astype(np.float32)
        nib.save(nib.MGHImage(data[hemi], np.eye(4)), tmp_path / f"{hemi}.betas.mgh")
        nib.save(nib.MGHImage((np.arange(10) % 2).astype(np.float32).reshape(10, 1, 1), np.eye(4)),
                 tmp_path / f"{hemi}.mask.mgh")
        nib.save(nib.MGHImage(rng.integers(0, 3, 10).astype(np.int32).reshape(10, 1, 1), np.eye(4)),
                 tmp_path / "rois" / f"{hemi}.streams.mgz")
    (tmp_path / "stimuli.txt").write_text("".join(f"s{i}.png\n" for i in range(8)))
    assert detect_format(tmp_path) == "surface"
    ds = load_subject(tmp_path, subject="s7")  # no folder s7: the root itself is the subject's folder
    direct = load_surface({h: tmp_path / f"{h}.betas.mgh" for h in ("lh", "rh")},
                          [tmp_path / f"s{i}.png" for i in range(8)],
                          mask={h: tmp_path / f"{h}.mask.mgh" for h in ("lh", "rh")},
                          rois={"streams": {h: tmp_path / "rois" / f"{h}.streams.mgz" for h in ("lh", "rh")}},
                          subject="s7")
    _same(ds, direct)
    assert ds.roi_families == ["streams"] and len(ds.voxels) == 10


def test_errors_name_what_was_looked_for(tmp_path, small_root):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataFormatError) as info:
        load_subject(tmp_path)
    message = str(info.value)
    for looked_for in ("NSD root", "Algonauts 2023", "NIfTI folder", "surface folder", "notes.txt"):
        assert looked_for in message
    with pytest.raises(MissingFileError, match="does not exist"):
        load_subject(tmp_path / "absent")
    with pytest.raises(ConfigError, match="unknown data format"):
        load_subject(small_root, format="hcp")
    with pytest.raises(ConfigError, match=r"options not understood by the algonauts loader.*\['sessions'\]"):
        load_subject(small_root, sessions=[1])
    two = tmp_path / "two"
    for subj in ("subj01", "subj02"):
        shutil.copytree(small_root / "subj01", two / subj)
    with pytest.raises(ConfigError, match=r"which subject\?.*\['subj01', 'subj02'\]"):
        load_subject(two)
    folder = tmp_path / "vol"
    _volume_folder(folder)
    (folder / "stimuli.txt").unlink()
    with pytest.raises(MissingFileError, match=r"stimuli.txt: the stimulus list is missing"):
        load_subject(folder)


def test_a_dataset_too_small_to_fit_is_reported_with_its_folder(tmp_path, small_root):
    assert min_samples(5) == 7 and min_samples(3) == 5
    one = make_synthetic(tmp_path / "one", n_train=1, n_test=1)
    problems = validate_subject(one)
    images = one / "subj01" / "training_split" / "training_images"
    assert problems == [problems[0]] and problems[0].startswith(f"{images}: 1 training samples are too few")
    assert "at least 7" in problems[0] and "--cv" in problems[0]
    assert validate_subject(one, n_folds=2)[0].count("at least 4") == 1
    assert validate_subject(small_root) == []
    folder = tmp_path / "vol"
    _volume_folder(folder, n=6)
    assert "at least 7" in validate_subject(folder)[0] and validate_subject(folder, n_folds=3) == []
    with pytest.raises(ConfigError, match="at least 2 folds"):
        check_fittable(load_subject(folder), n_folds=1)


def test_missing_captions_point_to_the_subject_captions_file(copy_root, small_root):
    require_captions(load_subject(small_root))  # captions.csv present: no error
    (copy_root / "subj01" / "captions.csv").unlink()
    ds = load_subject(copy_root)
    with pytest.raises(MissingFileError) as info:
        require_captions(ds)
    assert str(info.value).startswith(f"{copy_root / 'subj01' / 'captions.csv'}: the stimuli have no captions")


def test_integer_valued_flags_unscaled_betas(tmp_path):
    stored = np.round(np.random.default_rng(0).normal(0, 600, (3, 3, 2, 8))).astype(np.int16)  # NSD: x 300
    nib.save(nib.Nifti1Image(stored, AFFINE), tmp_path / "betas.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((3, 3, 2), np.uint8), AFFINE), tmp_path / "mask.nii.gz")
    stimuli = [f"{i}.png" for i in range(8)]
    raw = load_nifti(tmp_path / "betas.nii.gz", tmp_path / "mask.nii.gz", stimuli, scale=1)
    scaled = load_nifti(tmp_path / "betas.nii.gz", tmp_path / "mask.nii.gz", stimuli, scale=300)
    assert integer_valued(raw["train"].responses.data)
    assert not integer_valued(scaled["train"].responses.data)
    np.save(tmp_path / "big.npy", np.r_[np.ones((1000, 50)), np.full((1, 50), 0.5)].astype(np.float32))
    assert not integer_valued(np.load(tmp_path / "big.npy", mmap_mode="r"))  # fraction in the last chunk
    assert integer_valued(np.arange(6).reshape(2, 3)) and not integer_valued(np.zeros((0, 3)))
