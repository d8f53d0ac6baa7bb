"""A mesh with a known vertex hierarchy: fsaverage5's sphere subdivided once, as fsaverage6 is built from it."""

import nibabel as nib
import numpy as np
import pytest
from nilearn import datasets


def subdivide(coords: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One icosahedral subdivision: a new vertex at each edge's midpoint (pushed onto the sphere), numbered after
    the old ones as in fsaverage; returns coordinates, faces and each new vertex's two parents."""
    edges = np.unique(np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    radius = np.linalg.norm(coords, axis=1).mean()
    mid = coords[edges].mean(axis=1)
    mid *= radius / np.linalg.norm(mid, axis=1, keepdims=True)
    index = {tuple(e): len(coords) + i for i, e in enumerate(edges)}
    m = np.array([[index[tuple(sorted((f[a], f[b])))] for a, b in ((0, 1), (1, 2), (2, 0))] for f in faces])
    new_faces = np.concatenate([np.stack([faces[:, 0], m[:, 0], m[:, 2]], 1), np.stack([faces[:, 1], m[:, 1], m[:, 0]], 1),
                                np.stack([faces[:, 2], m[:, 2], m[:, 1]], 1), m])
    return np.concatenate([coords, mid]), new_faces, edges


@pytest.fixture(scope="session")
def fine_sphere():
    """``{side: (coords, faces, parents)}`` of fsaverage5's spheres subdivided once (40,962 vertices each)."""
    mesh = datasets.load_fsaverage("fsaverage5")["sphere"]
    return {side: subdivide(np.asarray(mesh.parts[side].coordinates, np.float64), np.asarray(mesh.parts[side].faces))
            for side in ("left", "right")}


@pytest.fixture(scope="session")
def fine_sphere_dir(fine_sphere, tmp_path_factory):
    """A folder laid out as nilearn's fsaverage download (``sphere_{left,right}.gii``) holding the finer spheres."""
    folder = tmp_path_factory.mktemp("fsaverage")
    for side, (coords, faces, _) in fine_sphere.items():
        img = nib.gifti.GiftiImage(darrays=[
            nib.gifti.GiftiDataArray(coords.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
            nib.gifti.GiftiDataArray(faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"),
        ])
        nib.save(img, folder / f"sphere_{side}.gii")
    return folder
