"""Shipped ROI atlases, ctab parsing and the fsaverage -> fsaverage5 mapping."""

import numpy as np
import pytest

from braincode import atlases
from braincode.errors import ConfigError, DataFormatError, MissingFileError

EXPECTED = {
    "prf-visualrois": ["V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"],
    "floc-bodies": ["EBA", "FBA-1", "FBA-2", "mTL-bodies"],
    "floc-faces": ["OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"],
    "floc-places": ["OPA", "PPA", "RSC"],
    "floc-words": ["OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"],
    "streams": ["early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal"],
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_nsd_families_use_nsd_integer_labels(family):
    labels = atlases.roi_labels(family)
    assert labels == {i + 1: name for i, name in enumerate(EXPECTED[family])}
    colors = atlases.roi_colors(family)
    assert list(colors) == EXPECTED[family]
    assert all(c.startswith("#") and len(c) == 7 for c in colors.values())


def test_atlas_labels_and_unknowns():
    table = atlases.atlas_labels()
    assert set(table.columns) == {"family", "value", "name", "color"}
    assert len(table) == 1 + sum(len(v) for v in EXPECTED.values())
    assert table["color"].is_unique
    with pytest.raises(ConfigError, match="no ROI family"):
        atlases.roi_labels("floc-cars")
    with pytest.raises(ConfigError, match="unknown atlas"):
        atlases.atlas_labels("glasser")


def test_label_names():
    names = atlases.label_names(np.array([[-1.0, 0.0], [3.0, np.nan]]), atlases.roi_labels("floc-places"))
    assert names.tolist() == [["", ""], ["RSC", ""]]
    with pytest.raises(DataFormatError, match="does not name"):
        atlases.label_names(np.array([9]), atlases.roi_labels("floc-places"), source="x.nii.gz")
    with pytest.raises(DataFormatError, match="whole numbers"):
        atlases.label_names(np.array([1.5]), atlases.roi_labels("floc-places"))


def test_read_ctab(tmp_path):
    path = tmp_path / "streams.mgz.ctab"
    path.write_text("0 Unknown\n1 early 10 20 30 0\n# comment\n\n2 midventral\n")
    assert atlases.read_ctab(path) == {1: "early", 2: "midventral"}
    path.write_text("early\n")
    with pytest.raises(DataFormatError, match="line 1"):
        atlases.read_ctab(path)
    with pytest.raises(MissingFileError):
        atlases.read_ctab(tmp_path / "absent.ctab")


def test_atlas_dir_falls_back_to_installed_data_files(tmp_path, monkeypatch):
    share = tmp_path / "prefix/share/braincode/atlases"
    share.mkdir(parents=True)
    (share / "nsd.json").write_text("{}")

    class Record:  # what importlib.metadata lists for a wheel-installed data file
        name, parts = "nsd.json", ("..", "..", "..", "share", "braincode", "atlases", "nsd.json")

        def locate(self):
            return share / "nsd.json"

    monkeypatch.setattr(atlases, "__file__", str(tmp_path / "site-packages/braincode/atlases.py"))
    monkeypatch.setattr(atlases.importlib.metadata, "files", lambda name: [Record()])
    assert atlases.atlas_dir() == share.resolve()
    monkeypatch.setattr(atlases.importlib.metadata, "files", lambda name: [])
    with pytest.raises(MissingFileError, match="not installed"):
        atlases.atlas_dir()
