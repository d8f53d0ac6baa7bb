"""NSD loader on tiny fixture files written in NSD's own formats (3 sessions of 12 trials, a 4x5x3 grid)."""

import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io

from braincode import io
from braincode.data.nsd import HDF5Stimuli, load_nsd, read_expdesign
from braincode.encoding.metrics import noise_ceiling
from braincode.errors import ConfigError, DataFormatError, MissingFileError

SHAPE = (4, 5, 3)
AFFINE = np.array([[-1.8, 0, 0, 3.0], [0, 1.8, 0, -4.0], [0, 0, 1.8, -2.0], [0, 0, 0, 1]])
N_SESSIONS, TRIALS, N_IMAGES, N_VERTICES = 3, 12, 30, 30
SUBJECT_ROW = 1  # subj02


def _design(rng):
    subjectim = np.zeros((8, N_IMAGES), np.int64)
    shared = rng.choice(np.arange(1, 101), 5, replace=False)  # 1-based NSD ids
    for s in range(8):
        own = rng.choice(np.setdiff1d(np.arange(1, 101), shared), N_IMAGES - 5, replace=False)
        subjectim[s] = np.r_[shared, own]
    # 1-based columns of subjectim: 1-3 three times, 4-9 twice, 10-24 once (36 trials), then 4 spare trials
    order = np.r_[np.repeat(np.arange(1, 4), 3), np.repeat(np.arange(4, 10), 2), np.arange(10, 25)]
    order = np.r_[rng.permutation(order), np.arange(25, 29)]
    return {"masterordering": order[None], "subjectim": subjectim, "sharedix": np.sort(shared)[None]}


def _write_nsd(root: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    exp = root / "nsddata/experiments/nsd"
    exp.mkdir(parents=True)
    design = _design(rng)
    scipy.io.savemat(exp / "nsd_expdesign.mat", design)
    pd.DataFrame({"nsdId": np.arange(100), "cocoId": 500_000 + np.arange(100)}).to_csv(
        exp / "nsd_stim_info_merged.csv", index=False
    )
    stim = root / "nsddata_stimuli/stimuli/nsd"
    stim.mkdir(parents=True)
    brick = rng.integers(0, 256, (100, 6, 6, 3), dtype=np.uint8)
    with h5py.File(stim / "nsd_stimuli.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=brick, chunks=(1, 6, 6, 3))

    # volume: int16 betas x 300, masks with -1 outside the brain
    vol = root / "nsddata_betas/ppdata/subj02/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    vol.mkdir(parents=True)
    psc = rng.normal(0, 2, (*SHAPE, N_SESSIONS * TRIALS)) + rng.normal(0, 1, (*SHAPE, 1, 1))[..., 0]
    stored = np.round(psc * 300).astype(np.int16)
    for s in range(N_SESSIONS):
        block = stored[..., s * TRIALS : (s + 1) * TRIALS]
        nib.save(nib.Nifti1Image(block, AFFINE), vol / f"betas_session{s + 1:02d}.nii.gz")
    ncsnr = rng.uniform(0, 1.5, SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(ncsnr, AFFINE), vol / "ncsnr.nii.gz")
    roi = root / "nsddata/ppdata/subj02/func1pt8mm/roi"
    roi.mkdir(parents=True)
    general = rng.choice([-1, 0, 1], SHAPE, p=[0.2, 0.3, 0.5]).astype(np.int16)
    prf = np.where(general >= 0, rng.integers(0, 8, SHAPE), -1).astype(np.int16)
    nib.save(nib.Nifti1Image(general, AFFINE), roi / "nsdgeneral.nii.gz")
    nib.save(nib.Nifti1Image(prf, AFFINE), roi / "prf-visualrois.nii.gz")
    ctab = root / "nsddata/freesurfer/subj02/label"
    ctab.mkdir(parents=True)
    (ctab / "prf-visualrois.mgz.ctab").write_text(
        "0 Unknown\n"
        + "".join(f"{i + 1} {n}\n" for i, n in enumerate(["V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"]))
    )

    # fsaverage: float32 betas in percent signal change, per hemisphere
    surf = root / "nsddata_betas/ppdata/subj02/fsaverage/betas_fithrf_GLMdenoise_RR"
    surf.mkdir(parents=True)
    label = root / "nsddata/freesurfer/fsaverage/label"
    label.mkdir(parents=True)
    surface = {}
    for hemi in ("lh", "rh"):
        betas = rng.normal(0, 2, (N_VERTICES, N_SESSIONS * TRIALS)).astype(np.float32)
        surface[hemi] = betas
        for s in range(N_SESSIONS):
            block = betas[:, None, None, s * TRIALS : (s + 1) * TRIALS]
            nib.save(nib.MGHImage(block, np.eye(4)), surf / f"{hemi}.betas_session{s + 1:02d}.mgh")
        nib.save(
            nib.MGHImage(rng.uniform(0, 1, (N_VERTICES, 1, 1)).astype(np.float32), np.eye(4)),
            surf / f"{hemi}.ncsnr.mgh",
        )
        keep = (np.arange(N_VERTICES) % 3 != 0).astype(np.int32)
        nib.save(nib.MGHImage(keep[:, None, None], np.eye(4)), label / f"{hemi}.nsdgeneral.mgz")
        streams = rng.integers(0, 8, N_VERTICES).astype(np.int32)
        nib.save(nib.MGHImage(streams[:, None, None], np.eye(4)), label / f"{hemi}.streams.mgz")
    return {
        "design": design,
        "psc": stored / 300.0,
        "general": general,
        "prf": prf,
        "ncsnr": ncsnr,
        "surface": surface,
        "brick": brick,
    }


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd")
    return root, _write_nsd(root)


def _expected(trials_by_voxel: np.ndarray, design: dict, sessions=(1, 2, 3)):
    """Direct numpy: z-score per voxel within each session, then average the trials of each image."""
    blocks = []
    for s in sessions:
        x = trials_by_voxel[:, (s - 1) * TRIALS : s * TRIALS]
        sd = x.std(1, keepdims=True)
        blocks.append(np.where(sd > 0, (x - x.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1), 0))
    z = np.concatenate(blocks, axis=1)
    order = design["masterordering"][0] - 1
    trial_ids = np.concatenate(
        [design["subjectim"][SUBJECT_ROW, order[(s - 1) * TRIALS : s * TRIALS]] - 1 for s in sessions]
    )
    shared = design["subjectim"][SUBJECT_ROW, :5] - 1
    out = {}
    for split, sel in (("train", ~np.isin(trial_ids, shared)), ("test", np.isin(trial_ids, shared))):
        ids = np.unique(trial_ids[sel])
        out[split] = (
            ids,
            np.stack([z[:, trial_ids == i].mean(1) for i in ids]),
            np.array([(trial_ids == i).sum() for i in ids]),
        )
    return out


def test_volume_round_trip_equals_numpy(nsd):
    root, truth = nsd
    ds = load_nsd(root, "subj02")
    inside = truth["general"] > 0
    expected = _expected(truth["psc"][inside], truth["design"])
    assert ds.meta["trials_per_session"] == TRIALS and ds.meta["sessions"] == [1, 2, 3]
    for split in ("train", "test"):
        ids, data, counts = expected[split]
        np.testing.assert_array_equal(ds.meta["nsd_ids"][split], ids)
        np.testing.assert_array_equal(ds.meta["repeats"][split], counts)
        np.testing.assert_allclose(ds[split].responses.data, data, atol=1e-5)
        assert ds[split].stimuli.ids == tuple(f"nsd-{i:05d}" for i in ids)
        np.testing.assert_array_equal(ds.meta["coco_ids"][split], 500_000 + ids)
    assert sorted(ds.meta["repeats"]["test"]) == [2, 2, 3, 3, 3] and len(ds.meta["nsd_ids"]["train"]) == 19
    vox = ds.voxels
    np.testing.assert_array_equal(vox[["i", "j", "k"]].to_numpy(), np.argwhere(inside))
    np.testing.assert_allclose(
        vox[["x", "y", "z"]].to_numpy(), nib.affines.apply_affine(AFFINE, np.argwhere(inside)), atol=1e-5
    )
    names = np.array(["", "V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"])
    assert vox["prf-visualrois"].tolist() == names[truth["prf"][inside]].tolist()
    nc = noise_ceiling(truth["ncsnr"][inside], expected["test"][2])
    np.testing.assert_allclose(vox["noise_ceiling"], nc)
    np.testing.assert_allclose(ds.meta["affine"], AFFINE, atol=1e-6)
    assert ds.meta["shape"] == SHAPE


def test_scores_written_back_to_nifti_in_place(nsd, tmp_path):
    root, truth = nsd
    ds = load_nsd(root, 2, images=False)
    scores = np.random.default_rng(1).uniform(0, 100, len(ds.voxels))
    out = io.write_map(scores, ds, tmp_path / "scores.nii.gz")
    img = nib.load(out)
    assert img.shape == SHAPE and np.allclose(img.affine, AFFINE)
    back = img.get_fdata()
    inside = truth["general"] > 0
    np.testing.assert_allclose(back[inside], scores.astype(np.float32))
    assert np.isnan(back[~inside]).all()


def test_surface_round_trip_and_write_back(nsd, tmp_path):
    root, truth = nsd
    ds = load_nsd(root, "subj02", space="fsaverage")
    keep = np.arange(N_VERTICES) % 3 != 0
    both = np.concatenate([truth["surface"][h][keep] for h in ("lh", "rh")])
    expected = _expected(both, truth["design"])
    for split in ("train", "test"):
        np.testing.assert_allclose(ds[split].responses.data, expected[split][1], atol=1e-5)
    assert ds.voxels["hemisphere"].tolist() == ["lh"] * keep.sum() + ["rh"] * keep.sum()
    assert "streams" in ds.voxels and "prf-visualrois" not in ds.voxels  # families without files are skipped
    assert ds.meta["n_vertices"] == {"lh": N_VERTICES, "rh": N_VERTICES}
    scores = np.arange(len(ds.voxels), dtype=float)
    written = io.write_map(scores, ds, tmp_path / "{hemi}.scores.mgh")
    lh = nib.load(written["lh"]).get_fdata().ravel()
    np.testing.assert_array_equal(lh[keep], scores[: keep.sum()])
    assert np.isnan(lh[~keep]).all()


def test_session_subset_and_trial_rows(nsd):
    root, truth = nsd
    ds = load_nsd(root, 2, sessions=[2], average_repeats=False, rois=(), images=False)
    inside = truth["general"] > 0
    x = truth["psc"][inside][:, TRIALS : 2 * TRIALS]
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    order = truth["design"]["masterordering"][0][TRIALS : 2 * TRIALS] - 1
    ids = truth["design"]["subjectim"][SUBJECT_ROW, order] - 1
    train = ~np.isin(ids, truth["design"]["subjectim"][SUBJECT_ROW, :5] - 1)
    np.testing.assert_allclose(ds["train"].responses.data, z[:, train].T, atol=1e-5)
    np.testing.assert_array_equal(ds.meta["nsd_ids"]["train"], ids[train])
    assert list(ds.voxels.columns) == ["hemisphere", "vertex", "i", "j", "k", "x", "y", "z", "noise_ceiling"]
    np.testing.assert_allclose(ds.voxels["noise_ceiling"], noise_ceiling(truth["ncsnr"][inside], 1))


def test_hdf5_stimuli_are_lazy_rows_of_the_brick(nsd):
    root, truth = nsd
    ds = load_nsd(root, 2, rois=())
    stim = ds["test"].stimuli
    assert isinstance(stim, HDF5Stimuli) and stim.paths is None
    first = ds.meta["nsd_ids"]["test"][0]
    np.testing.assert_array_equal(np.asarray(stim.image(0)), truth["brick"][first])
    sub = stim.subset([1, 0])
    assert isinstance(sub, HDF5Stimuli) and sub.ids == (stim.ids[1], stim.ids[0])
    assert sub.content_hashes == (stim.content_hashes[1], stim.content_hashes[0])
    assert len(set(stim.content_hashes)) == len(stim)


def test_read_expdesign_is_zero_based(nsd):
    root, truth = nsd
    design = read_expdesign(root / "nsddata/experiments/nsd/nsd_expdesign.mat")
    assert design.masterordering[0] == truth["design"]["masterordering"][0, 0] - 1
    np.testing.assert_array_equal(
        design.shared(SUBJECT_ROW), truth["design"]["subjectim"][SUBJECT_ROW, :5] - 1
    )
    np.testing.assert_array_equal(np.sort(design.shared(0)), design.sharedix)


@pytest.fixture
def broken(nsd, tmp_path):
    root, _ = nsd
    return Path(shutil.copytree(root, tmp_path / "nsd"))


def test_errors_on_missing_files(broken):
    betas = broken / "nsddata_betas/ppdata/subj02/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    with pytest.raises(MissingFileError, match="beta folder.*holds: betas_fithrf_GLMdenoise_RR"):
        load_nsd(broken, 2, betas="betas_fithrf")
    with pytest.raises(MissingFileError, match=r"sessions \[7\] not found"):
        load_nsd(broken, 2, sessions=[1, 7])
    (
        broken / "nsddata_betas/ppdata/subj02/fsaverage/betas_fithrf_GLMdenoise_RR/rh.betas_session02.mgh"
    ).unlink()
    with pytest.raises(MissingFileError, match="session 2 lacks its rh betas"):
        load_nsd(broken, 2, space="fsaverage")
    (broken / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5").unlink()
    with pytest.raises(MissingFileError, match="nsd_stimuli.hdf5"):
        load_nsd(broken, 2)
    (broken / "nsddata/ppdata/subj02/func1pt8mm/roi/nsdgeneral.nii.gz").unlink()
    with pytest.raises(MissingFileError, match="mask not found.*prf-visualrois.nii.gz"):
        load_nsd(broken, 2, images=False)
    for f in betas.glob("betas_session*"):
        f.unlink()
    with pytest.raises(MissingFileError, match="no NSD beta files.*ncsnr.nii.gz"):
        load_nsd(broken, 2, images=False, mask=None)
    (broken / "nsddata/experiments/nsd/nsd_expdesign.mat").unlink()
    with pytest.raises(MissingFileError, match="design file not found.*nsd_stim_info_merged.csv"):
        load_nsd(broken, 2, space="fsaverage")


def test_errors_on_malformed_files(broken):
    betas = broken / "nsddata_betas/ppdata/subj02/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    first = nib.load(betas / "betas_session01.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(first.dataobj)[..., :10], AFFINE), betas / "betas_session03.nii.gz")
    with pytest.raises(DataFormatError, match="session 3 has a different number of trials.*expected 12"):
        load_nsd(broken, 2, images=False)
    shifted = AFFINE.copy()
    shifted[0, 3] += 5
    nib.save(nib.Nifti1Image(np.asarray(first.dataobj), shifted), betas / "betas_session03.nii.gz")
    with pytest.raises(DataFormatError, match="different affines"):
        load_nsd(broken, 2, images=False)
    nib.save(nib.Nifti1Image(np.asarray(first.dataobj)[..., 0], AFFINE), betas / "betas_session03.nii.gz")
    with pytest.raises(DataFormatError, match="4-D"):
        load_nsd(broken, 2, images=False, sessions=[3])
    exp = broken / "nsddata/experiments/nsd/nsd_expdesign.mat"
    scipy.io.savemat(
        exp,
        {
            "masterordering": np.arange(1, 11)[None],
            "subjectim": np.ones((8, 20)),
            "sharedix": np.ones((1, 5)),
        },
    )
    with pytest.raises(DataFormatError, match="fewer trials than the beta files"):
        load_nsd(broken, 2, images=False, sessions=[1, 2])
    scipy.io.savemat(exp, {"subjectim": np.ones((8, 20))})
    with pytest.raises(DataFormatError, match="lacks variables"):
        load_nsd(broken, 2, images=False)
    with pytest.raises(ConfigError, match="beta version"):
        load_nsd(broken, 2, betas="betas_glm")
    with pytest.raises(ConfigError, match="NSD space"):
        load_nsd(broken, 2, space="MNI")
    with pytest.raises(ConfigError, match="NSD subject"):
        load_nsd(broken, "subj00")


def test_error_on_labels_outside_the_ctab(broken):
    roi = broken / "nsddata/ppdata/subj02/func1pt8mm/roi/prf-visualrois.nii.gz"
    nib.save(nib.Nifti1Image(np.full(SHAPE, 9, np.int16), AFFINE), roi)
    with pytest.raises(DataFormatError, match=r"label table does not name.*\[9\]"):
        load_nsd(broken, 2, images=False)


def test_error_on_small_stimulus_brick(broken):
    with h5py.File(broken / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=np.zeros((3, 6, 6, 3), np.uint8))
    with pytest.raises(DataFormatError, match="fewer images than the design needs"):
        load_nsd(broken, 2)
