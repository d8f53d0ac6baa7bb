"""A tiny NSD subject (subj02) written in NSD's own file formats, shared by the NSD and pipeline tests."""

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io

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


def write_nsd(root: Path, seed: int = 0) -> dict:
    """Write the fixture under ``root``; returns the arrays it was made from (the expected values)."""
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


def write_nsd_fsaverage(
    root: Path, *, n_vertices: int = 163_842, sessions: int = 4, trials: int = 750, seed: int = 0
) -> dict:
    """An NSD subject (subj01) on fsaverage at any size, betas stored as NSD stores them: int16 x 300.

    Every trial shows a different image (``sessions * trials`` images; those among the first 1000 columns of
    ``subjectim`` are the shared test images). The real size, 2 x 163,842 vertices and 4 sessions of 750 trials
    (3,000 images), takes 2 GB on disk. Returns the design and the ``(lh, rh)`` percent-signal-change betas of
    the first session (the rest are not kept in memory).
    """
    rng = np.random.default_rng(seed)
    n_trials = sessions * trials
    exp = root / "nsddata/experiments/nsd"
    exp.mkdir(parents=True)
    subjectim = np.stack([rng.permutation(73_000)[:10_000] + 1 for _ in range(8)])
    subjectim[:, :1000] = np.sort(subjectim[0, :1000])  # the shared images, the same for every subject
    order = np.r_[rng.permutation(10_000)[:n_trials], np.zeros(max(0, 30_000 - n_trials), np.int64)] + 1
    design = {"masterordering": order[None], "subjectim": subjectim, "sharedix": subjectim[:1, :1000]}
    scipy.io.savemat(exp / "nsd_expdesign.mat", design)
    surf = root / "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR"
    surf.mkdir(parents=True)
    first = {}
    for hemi in ("lh", "rh"):
        nib.save(nib.MGHImage(rng.uniform(0, 1.5, (n_vertices, 1, 1)).astype(np.float32), np.eye(4)),
                 surf / f"{hemi}.ncsnr.mgh")
        signal = rng.standard_normal((n_vertices, 1), dtype=np.float32)
        for s in range(sessions):
            psc = rng.standard_normal((n_vertices, trials), dtype=np.float32)
            psc += signal
            stored = np.round(psc * 300).astype(np.int16)
            if s == 0:
                first[hemi] = stored / np.float32(300)
            nib.save(nib.MGHImage(stored[:, None, None], np.eye(4)), surf / f"{hemi}.betas_session{s + 1:02d}.mgh")
            del psc, stored
    return {"design": design, "first_session": first}
