"""Generic NIfTI (betas + mask) and GIFTI/MGH surface loaders, and their errors for malformed input."""

import nibabel as nib
import numpy as np
import pytest

from braincode.data.core import Stimuli
from braincode.data.surface import load_surface, read_surface_data
from braincode.data.volume import load_nifti
from braincode.errors import ConfigError, DataFormatError, MissingFileError

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
AFFINE[:3, 3] = [-4, -5, -3]


@pytest.fixture
def volume(tmp_path):
    rng = np.random.default_rng(0)
    betas = rng.normal(size=(4, 5, 3, 6)).astype(np.float32)
    mask = (rng.uniform(size=(4, 5, 3)) > 0.4).astype(np.int16)
    mask[0, 0, 0] = -1  # NSD-style "outside the brain" is not selected
    rois = rng.integers(-1, 4, (4, 5, 3)).astype(np.int16)
    nc = rng.uniform(size=(4, 5, 3)).astype(np.float32)
    for name, arr in {"betas": betas, "mask": mask, "floc-places": rois, "nc": nc}.items():
        nib.save(nib.Nifti1Image(arr, AFFINE), tmp_path / f"{name}.nii.gz")
    (tmp_path / "stimuli.txt").write_text("".join(f"img{i}.png\n" for i in range(6)))
    return tmp_path, betas, mask > 0, rois, nc


def test_load_nifti_matches_numpy(volume):
    d, betas, inside, rois, nc = volume
    ds = load_nifti(
        d / "betas.nii.gz",
        d / "mask.nii.gz",
        d / "stimuli.txt",
        rois={"floc-places": d / "floc-places.nii.gz"},
        noise_ceiling=d / "nc.nii.gz",
    )
    np.testing.assert_allclose(ds["train"].responses.data, betas[inside].T, rtol=1e-6)
    vox = ds.voxels
    np.testing.assert_array_equal(vox[["i", "j", "k"]].to_numpy(), np.argwhere(inside))
    np.testing.assert_array_equal(vox["vertex"], np.flatnonzero(inside))
    np.testing.assert_allclose(vox[["x", "y", "z"]], nib.affines.apply_affine(AFFINE, np.argwhere(inside)))
    assert (
        vox["roi:floc-places"].tolist()
        == np.array(["", "OPA", "PPA", "RSC"])[np.maximum(rois[inside], 0)].tolist()
    )
    np.testing.assert_allclose(vox["noise_ceiling"], nc[inside])
    assert ds["train"].stimuli.paths[0] == d / "img0.png" and ds.meta["shape"] == (4, 5, 3)


def test_load_nifti_sessions_and_int16_scale(volume, tmp_path):
    d, betas, inside, _, _ = volume
    stored = np.round(betas * 300).astype(np.int16)
    parts = [nib.Nifti1Image(stored[..., :3], AFFINE), nib.Nifti1Image(stored[..., 3:], AFFINE)]
    with pytest.raises(DataFormatError, match="integer data without a scale.*scale=300"):
        load_nifti(parts, d / "mask.nii.gz", Stimuli(ids=list("abcdef")))
    ds = load_nifti(parts, d / "mask.nii.gz", Stimuli(ids=list("abcdef")), scale=300)
    np.testing.assert_allclose(ds["train"].responses.data, stored[inside].T / 300, rtol=1e-6)


def test_load_nifti_errors(volume, tmp_path):
    d, betas, *_ = volume
    stim = Stimuli(ids=list("abcdef"))
    with pytest.raises(MissingFileError, match="betas not found.*holds: .*betas.nii.gz"):
        load_nifti(d / "beta.nii.gz", d / "mask.nii.gz", stim)
    with pytest.raises(DataFormatError, match="number of stimuli.*expected 6"):
        load_nifti(d / "betas.nii.gz", d / "mask.nii.gz", Stimuli(ids=list("abc")))
    shifted = AFFINE.copy()
    shifted[0, 3] += 1
    with pytest.raises(DataFormatError, match="(?s)different affines.*mask.nii.gz.*resample_to_img"):
        load_nifti(nib.Nifti1Image(betas, shifted), d / "mask.nii.gz", stim)
    with pytest.raises(DataFormatError, match="different grids"):
        load_nifti(nib.Nifti1Image(betas[:3], AFFINE), d / "mask.nii.gz", stim)
    with pytest.raises(DataFormatError, match="wrong number of dimensions.*4-D"):
        load_nifti(nib.Nifti1Image(betas[..., 0], AFFINE), d / "mask.nii.gz", stim)
    with pytest.raises(DataFormatError, match="selects no voxel"):
        load_nifti(d / "betas.nii.gz", nib.Nifti1Image(np.zeros((4, 5, 3), np.uint8), AFFINE), stim)
    with pytest.raises(DataFormatError, match="mask has the wrong number of dimensions"):
        load_nifti(d / "betas.nii.gz", d / "betas.nii.gz", stim)
    bad = betas.copy()
    bad[..., 2] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        load_nifti(nib.Nifti1Image(bad, AFFINE), nib.Nifti1Image(np.ones((4, 5, 3), np.uint8), AFFINE), stim)
    with pytest.raises(ConfigError, match="no label names for ROI family 'mine'"):
        load_nifti(d / "betas.nii.gz", d / "mask.nii.gz", stim, rois={"mine": d / "floc-places.nii.gz"})
    (d / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataFormatError, match="cannot read the betas"):
        load_nifti(d / "broken.nii.gz", d / "mask.nii.gz", stim)


@pytest.fixture
def surface(tmp_path):
    rng = np.random.default_rng(1)
    data = {
        "lh": rng.normal(size=(8, 5)).astype(np.float32),
        "rh": rng.normal(size=(9, 5)).astype(np.float32),
    }
    nib.save(nib.MGHImage(data["lh"][:, None, None, :], np.eye(4)), tmp_path / "lh.betas.mgh")
    arrays = [nib.gifti.GiftiDataArray(data["rh"][:, t]) for t in range(5)]
    nib.save(nib.gifti.GiftiImage(darrays=arrays), tmp_path / "rh.betas.func.gii")
    streams = {h: rng.integers(0, 8, len(v)) for h, v in data.items()}
    return tmp_path, data, streams


def test_load_surface_mixed_formats(surface):
    d, data, streams = surface
    mask = {"lh": np.arange(8) % 2 == 0, "rh": np.arange(9) < 4}
    ds = load_surface(
        {"lh": d / "lh.betas.mgh", "rh": d / "rh.betas.func.gii"},
        Stimuli(ids=list("abcde")),
        mask=mask,
        rois={"streams": streams},
        noise_ceiling={"lh": np.ones(8), "rh": np.zeros(9)},
    )
    expected = np.concatenate([data["lh"][mask["lh"]], data["rh"][mask["rh"]]]).T
    np.testing.assert_allclose(ds["train"].responses.data, expected)
    assert ds.voxels["vertex"].tolist() == [0, 2, 4, 6, 0, 1, 2, 3]
    assert ds.voxels["hemisphere"].tolist() == ["lh"] * 4 + ["rh"] * 4
    names = np.array(
        ["", "early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal"]
    )
    assert ds.voxels["roi:streams"].tolist() == names[np.r_[streams["lh"][::2], streams["rh"][:4]]].tolist()
    assert ds.meta["n_vertices"] == {"lh": 8, "rh": 9}
    assert ds.voxels["noise_ceiling"].tolist() == [1.0] * 4 + [0.0] * 4


def test_load_surface_sessions_concatenate(surface, tmp_path):
    d, data, _ = surface
    ds = load_surface({"lh": [d / "lh.betas.mgh", d / "lh.betas.mgh"]}, Stimuli(ids=list("abcdefghij")))
    np.testing.assert_allclose(ds["train"].responses.data, np.concatenate([data["lh"].T, data["lh"].T]))


def test_surface_errors(surface, tmp_path):
    d, data, _ = surface
    stim = Stimuli(ids=list("abcde"))
    with pytest.raises(MissingFileError, match="surface file not found.*holds: .*lh.betas.mgh"):
        load_surface({"lh": d / "lh.beta.mgh"}, stim)
    with pytest.raises(DataFormatError, match="per hemisphere"):
        load_surface({"left": d / "lh.betas.mgh"}, stim)
    with pytest.raises(DataFormatError, match="lh mask does not match.*8 vertices"):
        load_surface({"lh": d / "lh.betas.mgh"}, stim, mask={"lh": np.ones(5)})
    nib.save(nib.MGHImage(data["lh"][:, None, None, :3], np.eye(4)), d / "rh.short.mgh")
    with pytest.raises(DataFormatError, match="different numbers of samples"):
        load_surface({"lh": d / "lh.betas.mgh", "rh": d / "rh.short.mgh"}, stim)
    nib.save(nib.MGHImage(np.ones((4, 3, 2, 5), np.float32), np.eye(4)), d / "vol.mgh")
    with pytest.raises(DataFormatError, match="one value per vertex and sample"):
        read_surface_data(d / "vol.mgh")
    nib.save(nib.MGHImage(np.ones((8, 1, 1, 5), np.int16), np.eye(4)), d / "int.mgh")
    with pytest.raises(DataFormatError, match="integer data without a scale"):
        load_surface({"lh": d / "int.mgh"}, stim)
    with pytest.raises(DataFormatError, match="streams ROI has no rh map"):
        load_surface(
            {"lh": d / "lh.betas.mgh", "rh": d / "rh.betas.func.gii"},
            stim,
            rois={"streams": {"lh": np.zeros(8)}},
        )
    (d / "x.npy").write_bytes(b"")
    with pytest.raises(DataFormatError, match="unknown surface file type"):
        read_surface_data(d / "x.npy")
