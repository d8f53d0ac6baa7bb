import nibabel as nib
import numpy as np
import pytest

from braincode.report.fsaverage import (
    FSAVERAGE5_VERTICES,
    MESH_DIR_ENV,
    full_mesh_nearest,
    nearest_drawn,
    onto_drawn_mesh,
)


def test_each_midpoint_maps_to_one_of_its_parents(fine_sphere):
    coords, _, parents = fine_sphere["left"]
    nearest = nearest_drawn(coords)
    assert len(coords) == FSAVERAGE5_VERTICES + len(parents) == 40962
    assert (nearest[:FSAVERAGE5_VERTICES] == np.arange(FSAVERAGE5_VERTICES)).all()
    new = nearest[FSAVERAGE5_VERTICES:]
    assert ((new == parents[:, 0]) | (new == parents[:, 1])).all()


def test_every_value_reaches_the_mesh_as_the_mean_of_its_cell(fine_sphere):
    coords, _, _ = fine_sphere["left"]
    nearest = nearest_drawn(coords)
    rng = np.random.default_rng(0)
    vertex = rng.choice(len(coords), 3000, replace=False)
    values = rng.standard_normal(3000)
    drawn = onto_drawn_mesh(vertex, values, nearest)
    assert drawn.shown == drawn.total == 3000 and drawn.share == 1.0
    expected = {}
    for v, x in zip(vertex, values):
        expected.setdefault(nearest[v], []).append(x)
    assert set(np.flatnonzero(np.isfinite(drawn.values))) == set(expected)
    for target, xs in expected.items():
        assert drawn.values[target] == pytest.approx(np.mean(xs))
    # without the fine mesh only the vertices below 10,242 are placed, and the share says so
    coarse = onto_drawn_mesh(vertex, values)
    below = vertex < FSAVERAGE5_VERTICES
    assert coarse.shown == below.sum() and coarse.share == pytest.approx(below.mean())
    assert np.allclose(coarse.values[vertex[below]], values[below])


def test_constant_regions_stay_constant(fine_sphere):
    coords, _, _ = fine_sphere["right"]
    nearest = nearest_drawn(coords)
    region = np.flatnonzero(coords[:, 2] > 20)  # a cap of the sphere, every vertex in it valued 0.7
    drawn = onto_drawn_mesh(region, np.full(len(region), 0.7), nearest)
    assert np.allclose(drawn.values[np.isfinite(drawn.values)], 0.7)


def test_full_mesh_found_through_the_environment_and_checked(fine_sphere, fine_sphere_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(MESH_DIR_ENV, str(fine_sphere_dir))
    nearest = full_mesh_nearest("lh")
    parents = fine_sphere["left"][2]
    assert nearest is not None and len(nearest) == 40962  # float32 on disk may break midpoint ties otherwise
    assert ((nearest[FSAVERAGE5_VERTICES:] == parents[:, 0]) | (nearest[FSAVERAGE5_VERTICES:] == parents[:, 1])).all()
    bad = tmp_path / "bad"
    bad.mkdir()
    coords, faces, _ = fine_sphere["left"]
    order = np.random.default_rng(0).permutation(len(coords))  # same sphere, vertices numbered otherwise
    nib.save(nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(coords[order].astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(np.argsort(order)[faces].astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"),
    ]), bad / "sphere_left.gii")
    monkeypatch.setenv(MESH_DIR_ENV, str(bad))
    assert full_mesh_nearest("lh") is None  # it does not start with fsaverage5's vertices: not fsaverage
