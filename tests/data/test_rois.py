"""The one ROI module: families recorded by column prefix, one selection grammar, the ROI helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braincode.data.rois import (
    roi_column,
    roi_families,
    roi_groups,
    roi_index,
    roi_labels,
    roi_mask,
    roi_means,
    roi_table,
    select_rois,
    with_rois,
)
from braincode.errors import ConfigError, DataFormatError


@pytest.fixture
def voxels() -> pd.DataFrame:
    base = pd.DataFrame({"hemisphere": ["lh"] * 3 + ["rh"] * 3, "vertex": [0, 1, 2, 0, 1, 2],
                         "noise_ceiling": np.linspace(0.1, 0.6, 6)})
    return with_rois(base, {
        "prf-visualrois": ["V1v", "V1v", "", "", "hV4", ""],
        "floc-faces": ["FFA-1", "", "FFA-2", "FFA-1", "", "OFA"],
        "floc-places": ["", "", "", "", "PPA", "PPA"],
        "custom": ["FFA-1", "", "", "", "", ""],  # a name shared with another family
    })


def test_families_survive_concat_and_csv(voxels, tmp_path):
    families = ["prf-visualrois", "floc-faces", "floc-places", "custom"]
    assert roi_families(voxels) == families
    # score columns named like anything (even a would-be family name) do not become families
    scores = pd.concat([voxels, pd.DataFrame({"r": np.arange(6.0), "streams": "x", "kind": "y"})], axis=1)
    assert roi_families(scores) == families
    scores.to_csv(tmp_path / "scores.csv", index=False)
    again = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    assert roi_families(again) == families
    for family in families:
        np.testing.assert_array_equal(roi_labels(again, family), roi_labels(voxels, family))
    # empty labels read back from CSV as NaN (default read_csv) still count as "outside every ROI"
    nan_read = pd.read_csv(tmp_path / "scores.csv")
    np.testing.assert_array_equal(roi_labels(nan_read, "floc-faces"), roi_labels(voxels, "floc-faces"))


def test_with_rois_checks_length_and_replaces(voxels):
    assert roi_column("floc-faces") == "roi:floc-faces" == roi_column("roi:floc-faces")
    replaced = with_rois(voxels, {"custom": [""] * 6})
    assert roi_families(replaced) == roi_families(voxels) and (roi_labels(replaced, "custom") == "").all()
    with pytest.raises(DataFormatError, match="one label per voxel"):
        with_rois(voxels, {"x": ["a"]})


def _sel(voxels, spec):
    return [(r.family, r.name, np.flatnonzero(r.mask).tolist()) for r in select_rois(voxels, spec)]


def test_selection_grammar(voxels):
    # family:name
    assert _sel(voxels, "floc-faces:FFA-1") == [("floc-faces", "FFA-1", [0, 3])]
    # name: every family that has it
    assert _sel(voxels, "FFA-1") == [("floc-faces", "FFA-1", [0, 3]), ("custom", "FFA-1", [0])]
    # family: each of its ROIs, sorted
    assert _sel(voxels, "floc-faces") == [("floc-faces", "FFA-1", [0, 3]), ("floc-faces", "FFA-2", [2]),
                                          ("floc-faces", "OFA", [5])]
    # the column name works as the family
    assert _sel(voxels, "roi:floc-places") == [("floc-places", "PPA", [4, 5])]
    # a name without its number: FFA = FFA-1 + FFA-2 (in the family, or everywhere)
    assert [r[:2] for r in _sel(voxels, "floc-faces:FFA")] == [("floc-faces", "FFA-1"), ("floc-faces", "FFA-2")]
    # several selections concatenate without duplicates
    assert [r[:2] for r in _sel(voxels, ["PPA", "floc-places:PPA", "V1v"])] == [("floc-places", "PPA"),
                                                                                   ("prf-visualrois", "V1v")]
    np.testing.assert_array_equal(roi_mask(voxels, "FFA"), [True, False, True, True, False, False])
    np.testing.assert_array_equal(roi_mask(voxels, ["OFA", "hV4"]), [False] * 4 + [True, True])


@pytest.mark.parametrize(("spec", "why"), [
    ("EBA", "no ROI of that name"),
    ("floc-bodies:EBA", "no family 'floc-bodies'"),
    ("floc-faces:PPA", "no ROI 'PPA' in floc-faces"),
    ("FF", "no ROI of that name"),  # a prefix must end at a dash: FF is not FFA-1
])
def test_selection_errors_list_the_choices(voxels, spec, why):
    with pytest.raises(ConfigError) as info:
        select_rois(voxels, spec)
    message = str(info.value)
    assert why in message and repr(spec) in message
    assert "families ['prf-visualrois', 'floc-faces', 'floc-places', 'custom']" in message
    assert "'floc-faces:FFA-1'" in message and "'floc-places:PPA'" in message


def test_empty_family_and_unknown_family(voxels):
    empty = with_rois(voxels, {"streams": [""] * 6})
    with pytest.raises(ConfigError, match="the family labels no voxel"):
        select_rois(empty, "streams")
    with pytest.raises(ConfigError, match="no ROI family 'streams'"):
        roi_labels(voxels, "streams")


def test_roi_table_matches_groupby(voxels):
    scores = voxels.assign(r=np.array([0.1, 0.3, -0.2, 0.5, 0.0, 0.4]))
    table = roi_table(scores, ["r", "noise_ceiling"])
    for family in roi_families(scores):
        col = roi_column(family)
        labelled = scores[scores[col] != ""]
        expected = labelled.groupby(col)[["r", "noise_ceiling"]].mean()
        got = table[table.family == family].set_index("roi")
        assert list(got.index) == sorted(expected.index)
        np.testing.assert_allclose(got[["r", "noise_ceiling"]].to_numpy(), expected.loc[got.index].to_numpy())
        assert got["voxels"].tolist() == labelled[col].value_counts().loc[got.index].tolist()
    last = table.iloc[-1]
    assert (last.family, last.roi, last.voxels) == ("all", "all", 6)
    assert last.r == pytest.approx(scores.r.mean())
    with pytest.raises(ConfigError, match="lacks columns"):
        roi_table(scores, ["r_test"])


def test_roi_means_along_either_axis(voxels):
    rng = np.random.default_rng(0)
    per_voxel = rng.normal(size=(6, 3))
    table = roi_means(per_voxel, voxels)
    index = roi_index(voxels)
    assert len(table) == sum(len(v) for v in index.values())
    for row in table.itertuples():
        np.testing.assert_allclose(row.mean, per_voxel[index[row.family][row.roi]].mean(0))
    predictions = rng.normal(size=(4, 6))
    faces = roi_means(predictions, voxels, "floc-faces", axis=1)
    np.testing.assert_allclose(np.stack(faces["mean"]), np.stack([predictions[:, [0, 3]].mean(1),
                                                                  predictions[:, [2]].mean(1),
                                                                  predictions[:, [5]].mean(1)]))
    assert roi_means(np.arange(6.0), voxels, "PPA")["mean"].tolist() == [4.5]
    with pytest.raises(DataFormatError, match="disagree"):
        roi_means(predictions, voxels)


def test_roi_groups_precedence(voxels):
    assert roi_groups(voxels, ["floc-faces", "prf-visualrois"]).tolist() == [
        "lh/FFA-1", "lh/V1v", "lh/FFA-2", "rh/FFA-1", "rh/hV4", "rh/OFA"]
    assert roi_groups(voxels, ["floc-places"], by_hemisphere=False).tolist() == ["other"] * 4 + ["PPA", "PPA"]
    with pytest.raises(ConfigError, match="no ROI family 'floc-words'"):
        roi_groups(voxels, ["floc-words"])
