"""Algonauts 2023 loader: round trip against the synthetic subject, and one clear error per layout defect."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braincode.data import (
    hemisphere_slices,
    load_algonauts,
    validate_algonauts,
    write_algonauts_predictions,
)
from braincode.data.rois import FAMILIES
from braincode.data.synthetic import load_truth
from braincode.errors import ConfigError, DataFormatError, MissingFileError

SUBJ = "subj01"


def _fmri(root, hemi):
    return root / SUBJ / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy"


def _roi(root, name):
    return root / SUBJ / "roi_masks" / name


def _images(root, split="train"):
    sub = ("training_split", "training_images") if split == "train" else ("test_split", "test_images")
    return root.joinpath(SUBJ, *sub)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# --------------------------------------------------------------------------------------------- round trip


def test_round_trip(small_root):
    ds = load_algonauts(small_root, SUBJ)
    truth = load_truth(small_root, SUBJ)
    lh, rh = np.load(_fmri(small_root, "lh")), np.load(_fmri(small_root, "rh"))

    assert ds.subject == SUBJ and ds.space == "fsaverage"
    assert set(ds.splits) == {"train", "test"}
    train, test = ds["train"], ds["test"]
    assert train.responses.data.dtype == np.float32
    np.testing.assert_array_equal(train.responses.data, np.concatenate([lh, rh], axis=1))
    assert test.responses is None and len(test.stimuli) == 5

    names = sorted(p.name for p in _images(small_root).iterdir())
    assert [p.name for p in train.stimuli.paths] == names
    assert list(train.stimuli.ids) == [n.removesuffix(".png") for n in names]
    captions = pd.read_csv(small_root / SUBJ / "captions.csv").set_index("image")["caption"]
    assert list(train.stimuli.captions) == captions[names].tolist()
    assert list(test.stimuli.captions) == captions[[p.name for p in test.stimuli.paths]].tolist()
    assert ds.meta["nsd_ids"]["train"].tolist() == list(range(1, 21))
    assert ds.meta["nsd_ids"]["test"].tolist() == list(range(21, 26))

    voxels = ds.voxels
    assert list(voxels.columns) == ["hemisphere", "vertex", *(f"roi:{f}" for f in FAMILIES)]
    assert ds.roi_families == list(FAMILIES)
    assert voxels["hemisphere"].tolist() == ["lh"] * lh.shape[1] + ["rh"] * rh.shape[1]
    for hemi in ("lh", "rh"):
        mask = np.load(_roi(small_root, f"{hemi}.all-vertices_fsaverage_space.npy"))
        np.testing.assert_array_equal(voxels.loc[voxels.hemisphere == hemi, "vertex"], np.flatnonzero(mask))
    # ROI names agree with the generator's truth, column by column
    np.testing.assert_array_equal(voxels["vertex"], truth.voxels["vertex"])
    prf = truth.voxels["kind"] == "prf"
    assert (voxels.loc[prf, "roi:prf-visualrois"] == truth.voxels.loc[prf, "roi"]).all()
    assert (voxels.loc[~prf, "roi:prf-visualrois"] == "").all()
    for family, category in [("floc-faces", "face"), ("floc-bodies", "body"), ("floc-places", "place"),
                             ("floc-words", "word")]:  # fmt: skip
        inside = voxels[f"roi:{family}"] != ""
        assert inside.any()
        assert (truth.voxels.loc[inside, "category"] == category).all()
        assert (voxels.loc[inside, f"roi:{family}"] == truth.voxels.loc[inside, "roi"]).all()
    assert set(voxels["roi:streams"]) == {"early", "midventral", "ventral", "lateral", "parietal"}
    assert (voxels.loc[voxels["roi:prf-visualrois"].str.match(r"V[123]"), "roi:streams"] == "early").all()


@pytest.mark.parametrize("subject", ["subj01", "1", 1, "01"])
def test_subject_forms(small_root, subject):
    assert load_algonauts(small_root, subject).subject == SUBJ


def test_bad_subject_spec(small_root):
    with pytest.raises(ConfigError, match="cannot read 'sub-A' as a subject"):
        load_algonauts(small_root, "sub-A")


def test_predictions_round_trip(small_root, tmp_path):
    ds = load_algonauts(small_root, SUBJ)
    slices = hemisphere_slices(ds.voxels)
    n_lh = int((ds.voxels.hemisphere == "lh").sum())
    assert slices == {"lh": slice(0, n_lh), "rh": slice(n_lh, len(ds.voxels))}
    pred = np.random.default_rng(0).standard_normal((5, len(ds.voxels)))
    paths = write_algonauts_predictions(tmp_path / "sub" / SUBJ, pred, ds.voxels)
    assert {h: p.name for h, p in paths.items()} == {"lh": "lh_pred_test.npy", "rh": "rh_pred_test.npy"}
    for hemi, sl in slices.items():
        written = np.load(paths[hemi])
        assert written.dtype == np.float32
        np.testing.assert_array_equal(written, pred[:, sl].astype(np.float32))
    assert sorted(p.name for p in paths["lh"].parent.iterdir()) == ["lh_pred_test.npy", "rh_pred_test.npy"]


def test_predictions_bad_input_writes_nothing(small_root, tmp_path):
    voxels = load_algonauts(small_root, SUBJ).voxels
    out = tmp_path / "out"
    with pytest.raises(
        DataFormatError, match=rf"expected a numeric array of shape \(n_test, {len(voxels)}\)"
    ):
        write_algonauts_predictions(out, np.zeros((5, len(voxels) - 1)), voxels)
    bad = np.zeros((5, len(voxels)))
    bad[2, 7] = np.nan
    with pytest.raises(DataFormatError, match=r"non-finite values in columns \[7\]"):
        write_algonauts_predictions(out, bad, voxels)
    assert not out.exists()


def test_hemisphere_slices_refuses_interleaved():
    voxels = pd.DataFrame({"hemisphere": ["lh", "rh", "lh"], "vertex": [0, 1, 2]})
    with pytest.raises(DataFormatError, match="lh voxels are not contiguous"):
        hemisphere_slices(voxels)


# ------------------------------------------------------------------------------------------------ defects


def _put_nan(root):
    data = np.load(_fmri(root, "lh"))
    data[3, 7] = np.nan
    data[11, 2] = np.inf
    np.save(_fmri(root, "lh"), data)


def _drop_image(root):
    (_images(root) / "train-0005_nsd-00005.png").unlink()


def _truncate_npy(root):
    path = _fmri(root, "rh")
    path.write_bytes(path.read_bytes()[:-100])


def _corrupt_npy(root):
    _fmri(root, "rh").write_bytes(b"\x00garbage" * 50)


def _drop_mapping(root):
    _roi(root, "mapping_floc-faces.npy").unlink()


def _short_mask(root):
    path = _roi(root, "lh.floc-faces_challenge_space.npy")
    np.save(path, np.load(path)[:-1])


def _unknown_label(root):
    path = _roi(root, "lh.prf-visualrois_challenge_space.npy")
    labels = np.load(path)
    labels[[0, 4]] = 9
    np.save(path, labels)


def _text_file(root):
    (_images(root) / "notes.txt").write_text("not an image")


def _fake_png(root):
    (_images(root, "test") / "test-0002_nsd-00022.png").write_bytes(b"GIF89a not a png at all")


def _string_fmri(root):
    np.save(_fmri(root, "lh"), np.load(_fmri(root, "lh")).astype(str))


def _object_fmri(root):
    np.save(_fmri(root, "lh"), np.load(_fmri(root, "lh")).astype(object), allow_pickle=True)


def _rank3_fmri(root):
    data = np.load(_fmri(root, "rh"))
    np.save(_fmri(root, "rh"), data[:, :, None])


def _short_rh(root):
    np.save(_fmri(root, "rh"), np.load(_fmri(root, "rh"))[:-1])


def _drop_fmri(root):
    _fmri(root, "rh").unlink()


def _drop_all_vertices(root):
    _roi(root, "rh.all-vertices_fsaverage_space.npy").unlink()


def _extra_vertex(root):
    path = _roi(root, "lh.all-vertices_fsaverage_space.npy")
    mask = np.load(path)
    mask[np.flatnonzero(~mask)[0]] = True
    np.save(path, mask)


def _drop_one_hemisphere_mask(root):
    _roi(root, "rh.floc-words_challenge_space.npy").unlink()


def _caption_missing(root):
    path = root / SUBJ / "captions.csv"
    table = pd.read_csv(path)
    table[table.image != "test-0003_nsd-00023.png"].to_csv(path, index=False)


DEFECTS = [
    (_put_nan, DataFormatError, ["lh_training_fmri.npy", "2 NaN/inf values", "(3, 7), (11, 2)", "rows [3, 11]"]),
    (_drop_image, DataFormatError, ["lh_training_fmri.npy", "expected 20 images", "no image numbered [5]"]),
    (_truncate_npy, DataFormatError, ["rh_training_fmri.npy", "is truncated"]),
    (_corrupt_npy, DataFormatError, ["rh_training_fmri.npy", "not a readable .npy file"]),
    (_drop_mapping, MissingFileError, ["mapping_floc-faces.npy",
                                       "lh.floc-faces_challenge_space.npy and rh.floc-faces_challenge_space.npy"]),
    (_short_mask, DataFormatError, ["lh.floc-faces_challenge_space.npy", "different numbers of vertices"]),
    (_unknown_label, DataFormatError, ["lh.prf-visualrois_challenge_space.npy", "found labels [9]",
                                       "mapping_prf-visualrois.npy"]),
    (_text_file, DataFormatError, ["training_images", "not challenge images", "found 1: ['notes.txt']"]),
    (_fake_png, DataFormatError, ["test-0002_nsd-00022.png", "not a PNG file", "starting with 47 49 46 38"]),
    (_string_fmri, DataFormatError, ["lh_training_fmri.npy", "not numeric", "dtype <U"]),
    (_object_fmri, DataFormatError, ["lh_training_fmri.npy", "pickled Python objects"]),
    (_rank3_fmri, DataFormatError, ["rh_training_fmri.npy", "not a 2-D array", "(20, 260, 1)"]),
    (_short_rh, DataFormatError, ["rh_training_fmri.npy", "different numbers of rows", "expected 20 rows"]),
    (_drop_fmri, MissingFileError, ["rh_training_fmri.npy", "is missing"]),
    (_drop_all_vertices, MissingFileError, ["rh.all-vertices_fsaverage_space.npy", "is missing"]),
    (_extra_vertex, DataFormatError, ["lh.all-vertices_fsaverage_space.npy", "expected 260 vertices", "found 261"]),
    (_drop_one_hemisphere_mask, MissingFileError, ["rh.floc-words_challenge_space.npy", "is missing"]),
    (_caption_missing, DataFormatError, ["captions.csv", "no caption for ['test-0003_nsd-00023.png']"]),
]  # fmt: skip


@pytest.mark.parametrize(("breaker", "error", "phrases"), DEFECTS, ids=[d[0].__name__[1:] for d in DEFECTS])
def test_defect_is_named(copy_root, breaker, error, phrases):
    breaker(copy_root)
    before = _snapshot(copy_root)
    with pytest.raises(error) as info:
        load_algonauts(copy_root, SUBJ)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message
    assert "expected" in message and "found" in message and "fix:" in message
    assert _snapshot(copy_root) == before  # the loader wrote nothing
    problems = validate_algonauts(copy_root, SUBJ)
    assert len(problems) == 1 and problems[0] == message


def test_missing_subject_lists_those_found(small_root):
    with pytest.raises(MissingFileError) as info:
        load_algonauts(small_root, 3)
    message = str(info.value)
    assert "subj03" in message and "found subjects ['subj01']" in message
    assert validate_algonauts(small_root, 3) == [message]


def test_missing_root(tmp_path):
    with pytest.raises(MissingFileError, match="the data folder does not exist"):
        load_algonauts(tmp_path / "nowhere", 1)


def test_corrupt_image_found_by_validate_and_check_images(copy_root):
    path = _images(copy_root) / "train-0004_nsd-00004.png"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # valid signature, truncated data
    assert load_algonauts(copy_root, SUBJ)["train"].stimuli.paths[3] == path  # cheap load does not decode
    with pytest.raises(DataFormatError, match="train-0004_nsd-00004.png: the stimulus image is unreadable"):
        load_algonauts(copy_root, SUBJ, check_images=True)
    problems = validate_algonauts(copy_root, SUBJ)
    assert len(problems) == 1 and "train-0004_nsd-00004.png" in problems[0]


def test_validate_reports_every_defect(copy_root):
    _put_nan(copy_root)
    _drop_mapping(copy_root)
    _fake_png(copy_root)
    _short_mask(copy_root)  # still checked without its mapping
    problems = validate_algonauts(copy_root, SUBJ)
    files = ["test-0002_nsd-00022.png", "lh_training_fmri.npy", "mapping_floc-faces.npy",
             "lh.floc-faces_challenge_space.npy"]  # fmt: skip
    assert len(problems) == len(files)
    for problem, name in zip(problems, files):
        assert name in problem


def test_validate_clean_and_float_labels(copy_root):
    assert validate_algonauts(copy_root, SUBJ) == []
    # masks stored as integral floats and an all-vertices mask stored as 0/1 floats are accepted
    path = _roi(copy_root, "lh.streams_challenge_space.npy")
    np.save(path, np.load(path).astype(np.float64))
    mask_path = _roi(copy_root, "rh.all-vertices_fsaverage_space.npy")
    np.save(mask_path, np.load(mask_path).astype(np.float32))
    ds = load_algonauts(copy_root, SUBJ)
    assert (ds.voxels["roi:streams"] != "").all()


def test_absent_family_and_captions_are_optional(copy_root):
    for hemi in ("lh", "rh"):
        _roi(copy_root, f"{hemi}.floc-words_challenge_space.npy").unlink()
    (copy_root / SUBJ / "captions.csv").unlink()
    ds = load_algonauts(copy_root, SUBJ)
    assert "floc-words" not in ds.roi_families and ds["train"].stimuli.captions is None
