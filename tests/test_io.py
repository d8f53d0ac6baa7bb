"""Writing per-voxel results back to NIfTI / GIFTI / MGH, in place and atomically."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braincode import io
from braincode.data.core import Dataset
from braincode.errors import ConfigError, DataFormatError

AFFINE = np.array([[-1.8, 0, 0, 70.0], [0, 1.8, 0, -90.0], [0, 0, 1.8, -60.0], [0, 0, 0, 1]])


def _volume_voxels(shape=(4, 5, 3), n=20, seed=0):
    rng = np.random.default_rng(seed)
    flat = np.sort(rng.choice(np.prod(shape), n, replace=False))
    ijk = np.stack(np.unravel_index(flat, shape), axis=1)
    return pd.DataFrame({"hemisphere": "", "vertex": flat, "i": ijk[:, 0], "j": ijk[:, 1], "k": ijk[:, 2]})


@pytest.mark.parametrize("name", ["out.nii.gz", "out.nii"])
def test_write_volume_round_trip(tmp_path, name):
    vox = _volume_voxels()
    values = np.linspace(-1, 1, len(vox))
    ref = nib.Nifti1Image(np.zeros((4, 5, 3), np.float32), AFFINE)
    out = io.write_volume(values, vox, tmp_path / name, reference=ref)
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-5)
    data = img.get_fdata()
    np.testing.assert_allclose(data[vox.i, vox.j, vox.k], values, rtol=1e-6)
    assert np.isnan(data).sum() == 60 - len(vox)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left behind


def test_write_volume_4d_and_fill(tmp_path):
    vox = _volume_voxels()
    values = np.c_[np.arange(20.0), -np.arange(20.0)]
    out = io.write_volume(values, vox, tmp_path / "two.nii.gz", reference=AFFINE, shape=(4, 5, 3), fill=0)
    data = nib.load(out).get_fdata()
    assert data.shape == (4, 5, 3, 2) and np.isfinite(data).all()
    np.testing.assert_array_equal(data[vox.i, vox.j, vox.k, 1], -np.arange(20.0))


def test_write_volume_errors(tmp_path):
    vox = _volume_voxels()
    with pytest.raises(ConfigError, match="NIfTI"):
        io.write_volume(np.zeros(20), vox, tmp_path / "x.mgh", reference=AFFINE, shape=(4, 5, 3))
    with pytest.raises(DataFormatError, match="one value"):
        io.write_volume(np.zeros(3), vox, tmp_path / "x.nii", reference=AFFINE, shape=(4, 5, 3))
    with pytest.raises(DataFormatError, match="outside the grid"):
        io.write_volume(np.zeros(20), vox, tmp_path / "x.nii", reference=AFFINE, shape=(2, 2, 2))
    with pytest.raises(ConfigError, match="shape="):
        io.write_volume(np.zeros(20), vox, tmp_path / "x.nii", reference=AFFINE)
    with pytest.raises(DataFormatError, match="no grid coordinates"):
        io.write_volume(np.zeros(20), vox[["hemisphere", "vertex"]], tmp_path / "x.nii", reference=AFFINE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".gii", ".mgh", ".mgz"])
def test_write_surface_round_trip(tmp_path, suffix):
    vox = pd.DataFrame({"hemisphere": ["lh"] * 3 + ["rh"] * 2, "vertex": [0, 4, 9, 1, 2]})
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    out = io.write_surface(
        values, vox, str(tmp_path / f"{{hemi}}.score{suffix}"), n_vertices={"lh": 10, "rh": 3}
    )
    lh = np.asarray(
        nib.load(out["lh"]).agg_data() if suffix == ".gii" else nib.load(out["lh"]).get_fdata()
    ).ravel()
    rh = np.asarray(
        nib.load(out["rh"]).agg_data() if suffix == ".gii" else nib.load(out["rh"]).get_fdata()
    ).ravel()
    assert lh.shape == (10,) and rh.shape == (3,)
    np.testing.assert_array_equal(lh[[0, 4, 9]], [1, 2, 3])
    np.testing.assert_array_equal(rh[[1, 2]], [4, 5])
    assert np.isnan(lh).sum() == 7 and np.isnan(rh[0])


def test_write_surface_multi_column_gifti_reads_back_with_braincode(tmp_path):
    from braincode.data.surface import read_surface_data

    vox = pd.DataFrame({"hemisphere": ["lh", "lh"], "vertex": [0, 2]})
    out = io.write_surface(
        np.array([[1.0, 2.0], [3.0, 4.0]]), vox, {"lh": tmp_path / "lh.k.gii"}, n_vertices=3
    )
    data, _ = read_surface_data(out["lh"])
    np.testing.assert_array_equal(data[[0, 2]], [[1, 2], [3, 4]])


def test_write_surface_errors(tmp_path):
    vox = pd.DataFrame({"hemisphere": ["lh", "rh"], "vertex": [0, 5]})
    with pytest.raises(DataFormatError, match="exceed the mesh"):
        io.write_surface(np.zeros(2), vox, str(tmp_path / "{hemi}.mgh"), n_vertices=3)
    with pytest.raises(ConfigError, match=r"\{hemi\}"):
        io.write_surface(np.zeros(2), vox, str(tmp_path / "one.mgh"), n_vertices=10)
    with pytest.raises(ConfigError, match="unknown surface format"):
        io.write_surface(np.zeros(2), vox, str(tmp_path / "{hemi}.npy"), n_vertices=10)
    with pytest.raises(DataFormatError, match="hemispheres"):
        io.write_surface(
            np.zeros(1), pd.DataFrame({"hemisphere": [""], "vertex": [0]}), "x.gii", n_vertices=1
        )
    assert list(tmp_path.iterdir()) == []


def test_write_map_dispatch(tmp_path):
    vox = _volume_voxels()
    ds = Dataset(
        splits={}, voxels=vox, subject="s", space="func1pt8mm", meta={"affine": AFFINE, "shape": (4, 5, 3)}
    )
    assert io.write_map(np.ones(20), ds, tmp_path / "v.nii.gz").is_file()
    surf = Dataset(
        splits={},
        voxels=pd.DataFrame({"hemisphere": ["lh"], "vertex": [163_841]}),
        subject="s",
        space="fsaverage",
    )
    out = io.write_map(np.ones(1), surf, tmp_path / "{hemi}.s.mgh")
    assert nib.load(out["lh"]).shape[0] == 163_842
    with pytest.raises(DataFormatError, match="grid"):
        io.write_map(np.ones(20), Dataset(splits={}, voxels=vox, subject="s", space="x"), tmp_path / "v.nii")
