"""NSD loader on tiny fixture files written in NSD's own formats (3 sessions of 12 trials, a 4x5x3 grid)."""

import os
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
from nsd_fixture import AFFINE, N_VERTICES, SHAPE, SUBJECT_ROW, TRIALS, write_nsd, write_nsd_fsaverage

from braincode import io
from braincode.data.nsd import HDF5Stimuli, load_nsd, read_expdesign
from braincode.data.reliability import noise_ceiling
from braincode.errors import ConfigError, DataFormatError, MissingFileError


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd")
    return root, write_nsd(root)


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
    assert vox["roi:prf-visualrois"].tolist() == names[truth["prf"][inside]].tolist()
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
    assert "streams" in ds.roi_families and "prf-visualrois" not in ds.roi_families  # families without files are skipped
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
    with pytest.raises(ConfigError, match="cannot read .subj00. as a subject"):
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


@pytest.mark.parametrize(("space", "average"), [("func1pt8mm", True), ("fsaverage", True), ("fsaverage", False)])
def test_memory_mapped_responses_equal_the_in_memory_ones(nsd, tmp_path, space, average):
    """Session by session into .npy files (read back memory-mapped) gives exactly the in-memory responses."""
    root, truth = nsd
    options = {"space": space, "average_repeats": average, "images": False, "mask": None}
    memory = load_nsd(root, 2, memmap=False, **options)
    mapped = load_nsd(root, 2, memmap=True, cache=tmp_path, **options)
    assert memory.meta["memmap"] is None and mapped.meta["memmap"].parent == tmp_path
    for split in ("train", "test"):
        data = mapped[split].responses.data
        assert isinstance(data.base, np.memmap) or isinstance(data, np.memmap)
        np.testing.assert_array_equal(data, memory[split].responses.data)
        np.testing.assert_array_equal(mapped.meta["nsd_ids"][split], memory.meta["nsd_ids"][split])
    if space == "fsaverage" and average:  # against direct numpy on the whole surface (no mask)
        full = np.concatenate([truth["surface"]["lh"], truth["surface"]["rh"]])
        expected = _expected(full, truth["design"])
        for split, (_, values, _) in expected.items():
            np.testing.assert_allclose(mapped[split].responses.data, values, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [mapped.meta["memmap"].name]  # no temporary left


def test_memory_mapped_responses_are_reused_until_a_beta_file_changes(nsd, tmp_path):
    root, _ = nsd
    copy = Path(shutil.copytree(root, tmp_path / "nsd"))
    options = {"space": "fsaverage", "memmap": True, "cache": tmp_path / "cache", "images": False}
    first = load_nsd(copy, 2, **options)
    beta = copy / "nsddata_betas/ppdata/subj02/fsaverage/betas_fithrf_GLMdenoise_RR/lh.betas_session02.mgh"
    stat = beta.stat()
    img = nib.load(beta)
    nib.save(nib.MGHImage(np.asarray(img.dataobj)[..., ::-1].copy(), img.affine), beta)  # trials reversed
    os.utime(beta, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert beta.stat().st_size == stat.st_size
    again = load_nsd(copy, 2, **options)  # same names, sizes and times: the cached responses, betas not read
    assert again.meta["memmap"] == first.meta["memmap"]
    np.testing.assert_array_equal(again["train"].responses.data, first["train"].responses.data)
    os.utime(beta)  # a newer file: the responses are rebuilt
    rebuilt = load_nsd(copy, 2, **options)
    assert rebuilt.meta["memmap"] != first.meta["memmap"]
    assert not np.array_equal(rebuilt["train"].responses.data, first["train"].responses.data)
    np.testing.assert_array_equal(rebuilt["train"].responses.data,
                                  load_nsd(copy, 2, space="fsaverage", memmap=False,
                                           images=False)["train"].responses.data)


def test_memmap_is_chosen_by_size():
    from braincode.data._nsd_betas import available_memory, should_memmap

    assert available_memory() > 0
    assert should_memmap(10**15) and not should_memmap(10**3)


def test_whole_surface_int16_betas_are_scaled_and_memory_mapped(tmp_path):
    """The whole-cortex path at small size: int16 x 300 MGH betas, no mask, one row per image."""
    truth = write_nsd_fsaverage(tmp_path / "nsd", n_vertices=40, sessions=2, trials=25)
    options = {"space": "fsaverage", "mask": None, "rois": (), "images": False, "zscore": False}
    mapped = load_nsd(tmp_path / "nsd", 1, memmap=True, cache=tmp_path / "cache", **options)
    memory = load_nsd(tmp_path / "nsd", 1, memmap=False, **options)
    order = truth["design"]["masterordering"][0][:25] - 1
    ids = truth["design"]["subjectim"][0, order] - 1
    first = np.concatenate([truth["first_session"]["lh"], truth["first_session"]["rh"]])  # (80, 25)
    for split in ("train", "test"):
        data = mapped[split].responses.data
        np.testing.assert_array_equal(data, memory[split].responses.data)
        rows = {i: r for r, i in enumerate(mapped.meta["nsd_ids"][split])}
        for t in range(25):
            if ids[t] in rows:
                np.testing.assert_allclose(data[rows[ids[t]]], first[:, t], rtol=1e-6)
    assert mapped["train"].responses.shape[1] == 80 and len(mapped.meta["nsd_ids"]["train"]) > 0
