"""Natural Scenes Dataset (NSD) loader: single-trial betas -> z-scored, repeat-averaged responses per image.

Layout read (``root`` is the folder holding ``nsddata/``, ``nsddata_betas/`` and ``nsddata_stimuli/``)::

    nsddata/experiments/nsd/nsd_expdesign.mat          masterordering, subjectim, sharedix (1-based)
    nsddata/experiments/nsd/nsd_stim_info_merged.csv   optional: nsdId (0-based) -> cocoId
    nsddata_betas/ppdata/subjNN/<space>/<betas>/
        func1pt8mm, func1mm:  betas_sessionSS.nii.gz (X, Y, Z, trials)  ncsnr.nii.gz
        fsaverage:            {lh,rh}.betas_sessionSS.mgh (V, 1, 1, trials)  {lh,rh}.ncsnr.mgh
    nsddata/ppdata/subjNN/<space>/roi/<family>.nii.gz   volume ROIs (-1 outside the brain, 0 unlabelled)
    nsddata/freesurfer/fsaverage/label/{lh,rh}.<family>.mgz   surface ROIs (``roi_dir=`` to use others)
    nsddata/freesurfer/subjNN/label/<family>.mgz.ctab   label names (braincode's NSD atlas otherwise)
    nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5        imgBrick (73000, 425, 425, 3) uint8, read lazily

Trial ``t`` (0-based, counted over sessions of ``trials_per_session`` trials, 750 in NSD and detected from the
files) showed image ``subjectim[s, masterordering[t] - 1] - 1`` (0-based NSD id). The first 1000 columns of
``subjectim`` are the shared images every subject saw (``sharedix`` sorted): they form the ``"test"`` split;
the subject's other images form ``"train"``.

Betas are read one session at a time into float32 (int16 files divided by 300), z-scored per voxel within the
session and added into per-image averages (:mod:`._nsd_betas`); large responses - the whole fsaverage cortex,
2 x 163,842 vertices - are written to ``.npy`` files in a cache folder and returned memory-mapped. The design
files are read by :mod:`.nsd_design`, the spaces by :mod:`._nsd_spaces`, the image brick by :mod:`.hdf5_stimuli`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from braincode.data._maps import listing
from braincode.data._nsd_betas import CachedResponses, session_responses, should_memmap, split_rows
from braincode.data._nsd_spaces import (
    SurfaceReader,
    VolumeReader,
    header_trials,
    select_sessions,
    session_files,
)
from braincode.data.core import Dataset, Responses, Split, Stimuli
from braincode.data.hdf5_stimuli import HDF5Stimuli, check_brick
from braincode.data.nsd_design import read_expdesign, read_stim_info, trial_ids
from braincode.data.reliability import noise_ceiling
from braincode.data.rois import FAMILIES, with_rois
from braincode.data.subjects import subject_id, subject_number
from braincode.errors import ConfigError, DataFormatError, MissingFileError

logger = logging.getLogger(__name__)

BETA_VERSIONS = ("betas_fithrf_GLMdenoise_RR", "betas_fithrf", "betas_assumehrf")
VOLUME_SPACES = ("func1pt8mm", "func1mm")
SURFACE_SPACES = ("fsaverage",)
#: Where memory-mapped responses go by default (``load_nsd(cache=...)``).
DEFAULT_CACHE = Path.home() / ".cache" / "braincode" / "nsd"


def nsd_paths(root: str | Path, subject: str | int, space: str, betas: str) -> dict[str, Path]:
    """The NSD paths that :func:`load_nsd` reads for one subject, space and beta version."""
    root = Path(root)
    subj = subject_id(subject)
    surface = space in SURFACE_SPACES
    return {
        "expdesign": root / "nsddata/experiments/nsd/nsd_expdesign.mat",
        "stim_info": root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
        "betas": root / "nsddata_betas/ppdata" / subj / space / betas,
        "roi": root
        / ("nsddata/freesurfer/fsaverage/label" if surface else f"nsddata/ppdata/{subj}/{space}/roi"),
        "ctab": root / "nsddata/freesurfer" / subj / "label",
        "stimuli": root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5",
    }


def load_nsd(
    root: str | Path,
    subject: str | int,
    *,
    space: str = "func1pt8mm",
    betas: str = "betas_fithrf_GLMdenoise_RR",
    sessions: Sequence[int] | None = None,
    mask: str | Path | None = "nsdgeneral",
    rois: Sequence[str] = FAMILIES,
    roi_dir: str | Path | None = None,
    scale: float | str = "auto",
    zscore: bool = True,
    average_repeats: bool = True,
    images: bool = True,
    memmap: bool | None = None,
    cache: str | Path | None = None,
) -> Dataset:
    """Load one NSD subject: betas z-scored per voxel within each session, averaged over repeats of each image.

    Parameters
    ----------
    root : str or Path
        NSD root (holding ``nsddata/``, ``nsddata_betas/``, ``nsddata_stimuli/``; see the module docstring).
    subject : str or int
        ``"subj01"`` .. ``"subj08"`` or 1..8.
    space : {"func1pt8mm", "func1mm", "fsaverage"}
    betas : {"betas_fithrf_GLMdenoise_RR", "betas_fithrf", "betas_assumehrf"}
    sessions : sequence of int, optional
        1-based sessions to load (all found by default). Trials per session are read from the files.
    mask : str, Path or None
        ROI name in the ROI folder (voxels/vertices > 0 are kept; default ``"nsdgeneral"``), a file (for
        surfaces a path with ``{hemi}``), or None for every voxel of the grid / vertex of the mesh.
    rois : sequence of str
        ROI families to add as voxel-table columns; families without files are skipped (logged).
    roi_dir : str or Path, optional
        Folder of the ROI files (default: ``nsddata/ppdata/subjNN/<space>/roi`` for volumes,
        ``nsddata/freesurfer/fsaverage/label`` for fsaverage).
    scale : float or "auto"
        Divisor of the stored betas; "auto" is 300 for integer files (NSD's int16 x 300) and 1 for float files.
    zscore : bool
        z-score each voxel across the trials of each session (as Algonauts; constant voxels become 0).
    average_repeats : bool
        Average the trials of each image (rows = images sorted by NSD id); otherwise rows are trials.
    images : bool
        Read stimuli from ``nsd_stimuli.hdf5`` (:class:`HDF5Stimuli`); ids only when False.
    memmap : bool or None
        Keep the responses in ``.npy`` files under ``cache`` and return them memory-mapped (True), in memory
        (False), or decide by size (None: memory-mapped when they exceed a quarter of the available memory, as
        the whole cortex does: 2 x 163,842 vertices x 10,000 images is 13 GB). Either way the betas are read
        one session at a time, so memory holds one session (plus the responses when not memory-mapped).
    cache : str or Path, optional
        Folder of the memory-mapped responses (default ``~/.cache/braincode/nsd``); a later load with the same
        files and options reuses them without reading the betas again.

    Returns
    -------
    Dataset
        Splits ``"train"`` (the subject's own images) and ``"test"`` (the shared 1000 images among those shown),
        ids ``"nsd-XXXXX"`` (0-based NSD id). ``voxels`` has ``hemisphere``, ``vertex``, ``i, j, k, x, y, z``
        (volumes), ROI columns and ``noise_ceiling`` (fraction 0..1 from ``ncsnr`` and the test split's repeat
        counts, when the ncsnr map exists). ``meta``: ``nsd_ids``, ``repeats`` (per split), ``ncsnr``,
        ``sessions``, ``trials_per_session``, ``coco_ids`` (when the stimulus table exists) and the grid
        (``affine``, ``shape``) or mesh sizes (``n_vertices``) for :func:`braincode.io.write_map`, ``source``
        (the beta folder) and ``memmap`` (the folder of the memory-mapped responses, or None).

    Examples
    --------
    >>> ds = load_nsd("/data/nsd", 1, space="fsaverage", sessions=[1, 2])  # doctest: +SKIP
    >>> ds["test"].responses.shape  # doctest: +SKIP
    (n_shared_images_seen, n_vertices)
    """
    subj, row = subject_id(subject), subject_number(subject) - 1
    if betas not in BETA_VERSIONS:
        raise ConfigError("unknown NSD beta version", expected=f"one of {BETA_VERSIONS}", found=repr(betas))
    if space not in VOLUME_SPACES + SURFACE_SPACES:
        raise ConfigError(
            "unknown NSD space", expected=f"one of {VOLUME_SPACES + SURFACE_SPACES}", found=repr(space)
        )
    if not (scale == "auto" or (isinstance(scale, (int, float)) and scale > 0)):
        raise ConfigError("scale must be 'auto' or a positive number", found=repr(scale))
    paths = nsd_paths(root, subj, space, betas)
    if not paths["betas"].is_dir():
        raise MissingFileError(
            "NSD beta folder not found",
            path=paths["betas"],
            found=listing(paths["betas"].parent),
            fix="check root, subject, space and beta version",
        )
    design = read_expdesign(paths["expdesign"])
    if row >= design.subjectim.shape[0]:
        raise DataFormatError(
            "the design file has no row for this subject",
            path=paths["expdesign"],
            expected=f"subjectim with > {row} rows",
            found=f"{design.subjectim.shape[0]}",
        )
    kind = "surface" if space in SURFACE_SPACES else "volume"
    reader = (SurfaceReader if kind == "surface" else VolumeReader)(
        paths["betas"], Path(roi_dir or paths["roi"]), mask
    )
    found = session_files(paths["betas"], kind)
    chosen = found if sessions is None else select_sessions(found, sessions, paths["betas"])
    per_session = header_trials(chosen[0][1])
    ids = trial_ids(design, row, [n for n, _ in chosen], per_session, paths["expdesign"])
    if images:
        check_brick(paths["stimuli"], "imgBrick", int(ids.max()))
    shared = np.isin(ids, design.shared(row))
    rows = {name: split_rows(ids, in_split, average_repeats) for name, in_split in (("train", ~shared),
                                                                                     ("test", shared))}
    n_bytes = 4 * reader.n_voxels * sum(r.ids.size for r in rows.values())
    options = {"zscore": zscore, "scale": scale, "average_repeats": average_repeats}
    folder = None
    if memmap or (memmap is None and should_memmap(n_bytes)):
        cached = CachedResponses(Path(cache) if cache is not None else DEFAULT_CACHE,
                                 _cache_key(root, subj, space, betas, chosen, reader, options))
        folder = cached.final
        splits = cached.load(list(rows))
        if splits is None:
            try:
                session_responses(reader, chosen, per_session, rows, scale=scale, zscore=zscore,
                                  folder=cached.build())
                splits = cached.commit(list(rows))
            finally:
                cached.abandon()
    else:
        splits = session_responses(reader, chosen, per_session, rows, scale=scale, zscore=zscore, folder=None)
    voxels = with_rois(reader.voxels, reader.rois(list(rois), paths["ctab"]))
    nsd_ids = {name: r.ids for name, r in rows.items()}
    repeats = {name: r.counts for name, r in rows.items()}
    ncsnr = _ncsnr(reader, paths["betas"])
    if ncsnr is not None and repeats["test"].size:
        # ceiling of the rows as returned: repeat averages of the test images, or single trials
        voxels["noise_ceiling"] = noise_ceiling(ncsnr, repeats["test"] if average_repeats else 1)
    meta = {
        "root": Path(root),
        "nsd_ids": nsd_ids,
        "repeats": repeats,
        "ncsnr": ncsnr,
        "betas": betas,
        "sessions": [n for n, _ in chosen],
        "source": paths["betas"],
        "captions_path": None,
        "memmap": folder,
        "trials_per_session": per_session,
        **reader.meta(),
    }
    if paths["stim_info"].is_file():
        info = read_stim_info(paths["stim_info"])
        meta["coco_ids"] = {k: info["cocoId"].reindex(v).to_numpy() for k, v in nsd_ids.items()}
    out = {
        name: Split(_stimuli(nsd_ids[name], paths["stimuli"] if images else None), Responses(data, voxels))
        for name, data in splits.items()
    }
    logger.info(
        "loaded NSD %s %s: %d sessions x %d trials, %d train / %d test rows, %d voxels%s",
        subj,
        space,
        len(chosen),
        per_session,
        len(nsd_ids["train"]),
        len(nsd_ids["test"]),
        len(voxels),
        f" (memory-mapped from {folder})" if folder else "",
    )
    return Dataset(splits=out, voxels=voxels, subject=subj, space=space, meta=meta)


def _ncsnr(reader, beta_dir: Path) -> np.ndarray | None:
    try:
        return reader.ncsnr().astype(np.float64)
    except MissingFileError:
        logger.warning("no ncsnr map in %s; the voxel table gets no noise_ceiling column", beta_dir)
        return None


def _cache_key(root, subj: str, space: str, betas: str, chosen, reader, options: dict) -> dict:
    """What the responses are made from: the beta files (names, sizes, times), the voxels and the options."""
    files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for _, group in chosen for p in group]
    voxels = reader.voxels[["hemisphere", "vertex"]].to_numpy().astype(str)
    return {"root": str(Path(root).resolve()), "subject": subj, "space": space, "betas": betas, "files": files,
            "voxels": hashlib.sha256(voxels.tobytes()).hexdigest(), **{k: str(v) for k, v in options.items()}}


def _stimuli(ids: np.ndarray, hdf5: Path | None) -> Stimuli:
    names = [f"nsd-{i:05d}" for i in ids.tolist()]
    return Stimuli(ids=names) if hdf5 is None else HDF5Stimuli(ids=names, hdf5=hdf5, rows=ids)
