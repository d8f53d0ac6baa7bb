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
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse
from PIL import Image

from braincode.atlases import label_names
from braincode.data._maps import listing, resolve_labels
from braincode.data.core import Dataset, Responses, Split, Stimuli
from braincode.data.reliability import noise_ceiling
from braincode.data.rois import FAMILIES, with_rois
from braincode.data.surface import HEMISPHERES, _vertex_values, read_surface_data
from braincode.data.volume import check_grid, mask_voxels, read_image, sample_volume
from braincode.errors import ConfigError, DataFormatError, MissingFileError
from braincode.progress import progress

logger = logging.getLogger(__name__)

BETA_VERSIONS = ("betas_fithrf_GLMdenoise_RR", "betas_fithrf", "betas_assumehrf")
VOLUME_SPACES = ("func1pt8mm", "func1mm")
SURFACE_SPACES = ("fsaverage",)
#: NSD stores volume betas as int16 x 300 (percent signal change x 300).
NSD_INT16_SCALE = 300.0


def nsd_subject(subject: str | int) -> tuple[str, int]:
    """``"subj01"``, ``"1"`` or ``1`` -> (``"subj01"``, 0-based row of ``subjectim``).

    Examples
    --------
    >>> nsd_subject(2)
    ('subj02', 1)
    """
    match = re.fullmatch(r"(?:subj)?0*([1-9]\d*)", str(subject).strip())
    if match is None or isinstance(subject, bool):
        raise ConfigError(f"cannot read {subject!r} as an NSD subject", expected="'subj01'..'subj08' or 1..8")
    number = int(match.group(1))
    return f"subj{number:02d}", number - 1


# ------------------------------------------------------------------------------------------ design files


@dataclass(frozen=True)
class NSDDesign:
    """The experimental design of NSD, 0-based.

    Attributes
    ----------
    masterordering : ndarray (n_trials,)
        For each trial, the column of ``subjectim`` (0..9999) that was shown.
    subjectim : ndarray (n_subjects, n_images_per_subject)
        NSD image ids (0..72999) of each subject's images; the first 1000 columns are the shared images.
    sharedix : ndarray (1000,)
        Sorted NSD ids of the shared images.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray

    def trial_images(self, subject_row: int, n_trials: int) -> np.ndarray:
        """0-based NSD id of each of the subject's first ``n_trials`` trials."""
        return self.subjectim[subject_row, self.masterordering[:n_trials]]

    def shared(self, subject_row: int) -> np.ndarray:
        """NSD ids of the shared images: ``subjectim[subject, :n]`` with ``n = len(sharedix)`` (1000 in NSD)."""
        return self.subjectim[subject_row, : self.sharedix.size]


def read_expdesign(path: str | Path) -> NSDDesign:
    """Read ``nsd_expdesign.mat`` (1-based MATLAB indices) into a 0-based :class:`NSDDesign`.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, scipy.io
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "nsd_expdesign.mat"
    >>> scipy.io.savemat(p, {"masterordering": [[2, 1, 2]], "subjectim": [[5, 9]], "sharedix": [[5]]})
    >>> d = read_expdesign(p)
    >>> d.trial_images(0, 3).tolist()
    [8, 4, 8]
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            "NSD design file not found",
            path=path,
            found=listing(path.parent),
            fix="download nsddata/experiments/nsd/nsd_expdesign.mat",
        )
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataFormatError("cannot read the MATLAB design file", path=path, found=str(exc)) from exc
    missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
    if missing:
        raise DataFormatError(
            "the design file lacks variables",
            path=path,
            expected="masterordering, subjectim, sharedix",
            found=f"missing {missing}",
        )
    order = np.asarray(mat["masterordering"]).ravel().astype(np.int64) - 1
    subjectim = np.atleast_2d(np.asarray(mat["subjectim"])).astype(np.int64) - 1
    shared = np.asarray(mat["sharedix"]).ravel().astype(np.int64) - 1
    if order.min(initial=0) < 0 or order.max(initial=0) >= subjectim.shape[1] or subjectim.min(initial=0) < 0:
        raise DataFormatError(
            "design indices out of range",
            path=path,
            expected=f"masterordering in 1..{subjectim.shape[1]}, subjectim >= 1",
            found=f"masterordering {order.min() + 1}..{order.max() + 1}",
        )
    if not np.array_equal(
        np.sort(subjectim[:, : shared.size], axis=1),
        np.broadcast_to(np.sort(shared), (len(subjectim), shared.size)),
    ):
        raise DataFormatError(
            "the first columns of subjectim are not the shared images",
            path=path,
            expected=f"subjectim[:, :{shared.size}] to hold the sharedix images for every subject",
            found="other images",
            fix="re-download nsd_expdesign.mat",
        )
    return NSDDesign(order, subjectim, shared)


def read_stim_info(path: str | Path) -> pd.DataFrame:
    """Read ``nsd_stim_info_merged.csv`` (one row per NSD image; ``nsdId`` 0-based, ``cocoId``, ``shared1000``)."""
    path = Path(path)
    table = pd.read_csv(path)
    missing = [c for c in ("nsdId", "cocoId") if c not in table.columns]
    if missing:
        raise DataFormatError(
            "the stimulus table lacks columns",
            path=path,
            expected="nsdId, cocoId",
            found=f"columns {list(table.columns)[:12]}",
        )
    return table.set_index("nsdId")


# ------------------------------------------------------------------------------------------ stimuli


@dataclass(frozen=True)
class HDF5Stimuli(Stimuli):
    """Stimuli read lazily from rows of an HDF5 image array (NSD's ``nsd_stimuli.hdf5``, dataset ``imgBrick``).

    Parameters
    ----------
    ids : sequence of str
    hdf5 : Path
        The HDF5 file.
    rows : sequence of int
        Row of the image array for each id (the 0-based NSD id for ``nsd_stimuli.hdf5``).
    dataset : str
        Name of the (n, height, width, 3) uint8 array.

    Examples
    --------
    >>> import tempfile, pathlib, h5py, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "stim.hdf5"
    >>> with h5py.File(p, "w") as f:
    ...     _ = f.create_dataset("imgBrick", data=np.full((3, 4, 4, 3), 7, np.uint8))
    >>> s = HDF5Stimuli(ids=["nsd-00002"], hdf5=p, rows=[2])
    >>> s.image(0).size, len(s.subset([0, 0]))
    ((4, 4), 2)
    """

    hdf5: Path | None = None
    rows: tuple[int, ...] = field(default=())
    dataset: str = "imgBrick"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hdf5", Path(self.hdf5) if self.hdf5 is not None else None)
        object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))
        if self.hdf5 is None or len(self.rows) != len(self.ids):
            raise DataFormatError(
                "HDF5Stimuli needs a file and one row per id",
                found=f"{len(self.rows)} rows for {len(self.ids)} ids",
            )

    @property
    def has_images(self) -> bool:
        """Always: images are rows of the HDF5 array."""
        return True

    def subset(self, index: Sequence[int] | np.ndarray) -> HDF5Stimuli:
        """Return the stimuli at ``index`` (positions), in that order."""
        idx = [int(i) for i in np.asarray(index).ravel()]
        return HDF5Stimuli(
            ids=[self.ids[i] for i in idx],
            captions=None if self.captions is None else [self.captions[i] for i in idx],
            hdf5=self.hdf5,
            rows=[self.rows[i] for i in idx],
            dataset=self.dataset,
        )

    def _array(self) -> h5py.Dataset:
        try:
            handle = h5py.File(self.hdf5, "r")
        except OSError as exc:
            raise DataFormatError(
                "cannot open the stimulus HDF5 file", path=self.hdf5, found=str(exc)
            ) from exc
        if self.dataset not in handle:
            handle.close()
            raise DataFormatError(
                "the HDF5 file lacks the image array",
                path=self.hdf5,
                expected=f"dataset {self.dataset!r}",
                found=f"{list(handle)}",
            )
        return handle[self.dataset]

    def image(self, i: int) -> Image.Image:
        """Stimulus ``i`` as an RGB PIL image (one row of the HDF5 array, read on demand)."""
        array = self._array()
        try:
            return Image.fromarray(np.asarray(array[self.rows[i]], dtype=np.uint8)).convert("RGB")
        finally:
            array.file.close()

    @cached_property
    def content_hashes(self) -> tuple[str, ...]:
        """SHA-256 of each image's pixel bytes."""
        array = self._array()
        try:
            return tuple(hashlib.sha256(np.asarray(array[r]).tobytes()).hexdigest() for r in self.rows)
        finally:
            array.file.close()


def _check_brick(path: Path, dataset: str, max_id: int) -> None:
    if not path.is_file():
        raise MissingFileError(
            "NSD stimulus file not found",
            path=path,
            found=listing(path.parent),
            fix="download nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5, or pass images=False",
        )
    with h5py.File(path, "r") as f:
        if dataset not in f or f[dataset].ndim != 4 or f[dataset].shape[-1] != 3:
            found = f"{dataset} of shape {f[dataset].shape}" if dataset in f else f"datasets {list(f)}"
            raise DataFormatError(
                "the stimulus file is not an image brick",
                path=path,
                expected=f"dataset {dataset!r} of shape (n, height, width, 3)",
                found=found,
            )
        if f[dataset].shape[0] <= max_id:
            raise DataFormatError(
                "the stimulus file has fewer images than the design needs",
                path=path,
                expected=f"more than {max_id} images",
                found=f"{f[dataset].shape[0]}",
            )


# ------------------------------------------------------------------------------------------ spaces


class _Volume:
    """Reads NSD volume data (func1pt8mm / func1mm) inside a mask."""

    def __init__(self, beta_dir: Path, roi_dir: Path, mask: str | Path | None):
        self.beta_dir, self.roi_dir = beta_dir, roi_dir
        first = _session_files(beta_dir, "volume")[0][1][0]
        grid = read_image(first, what="betas")
        if mask is None:
            mask_img = nib.Nifti1Image(np.ones(grid.shape[:3], np.uint8), grid.affine)
        else:
            mask_img = read_image(self._roi_path(mask), what="mask")
        self.grid = mask_img  # the file named in grid-mismatch messages
        self.mask_img, self.voxels = mask_voxels(mask_img)
        self.inside = np.asarray(self.mask_img.dataobj) > 0

    def _roi_path(self, name: str | Path) -> Path:
        return Path(name) if Path(name).suffix else self.roi_dir / f"{name}.nii.gz"

    def rois(self, families: Sequence[str], ctab_dir: Path) -> dict[str, np.ndarray]:
        columns = {}
        for family in families:
            path = self._roi_path(family)
            if not path.is_file():
                logger.info("no %s ROI volume at %s; column skipped", family, path)
                continue
            values = sample_volume(path, self.voxels, self.grid, f"{family} ROI volume")
            columns[family] = label_names(values, _labels(family, ctab_dir), source=path).astype(str)
        return columns

    def read(self, files: Sequence[Path]) -> tuple[np.ndarray, np.dtype]:
        img = read_image(files[0], what="betas")
        if img.ndim != 4:
            raise DataFormatError(
                "NSD volume betas must be 4-D",
                path=files[0],
                expected="(X, Y, Z, trials)",
                found=f"shape {img.shape}",
            )
        check_grid(img, self.grid, "betas")
        return np.asarray(img.dataobj)[self.inside], img.get_data_dtype()

    def ncsnr(self) -> np.ndarray:
        return sample_volume(self.beta_dir / "ncsnr.nii.gz", self.voxels, self.grid, "ncsnr volume")

    def meta(self) -> dict:
        return {"affine": self.mask_img.affine.copy(), "shape": tuple(int(s) for s in self.mask_img.shape)}


class _Surface:
    """Reads NSD fsaverage data (``{lh,rh}.*.mgh``) inside a per-hemisphere mask."""

    def __init__(self, beta_dir: Path, roi_dir: Path, mask: str | Path | None):
        self.beta_dir, self.roi_dir = beta_dir, roi_dir
        first = _session_files(beta_dir, "surface")[0][1]
        self.n_vertices = {h: int(nib.load(f).shape[0]) for h, f in zip(HEMISPHERES, first)}  # header only
        self.keep = {
            h: np.ones(n, bool)
            if mask is None
            else _vertex_values(self._roi_path(mask, h), n, f"{h} mask") > 0
            for h, n in self.n_vertices.items()
        }
        self.voxels = pd.DataFrame(
            {
                "hemisphere": np.concatenate([np.full(k.sum(), h) for h, k in self.keep.items()]),
                "vertex": np.concatenate([np.flatnonzero(k) for k in self.keep.values()]),
            }
        )

    def _roi_path(self, name: str | Path, hemi: str) -> Path:
        return Path(str(name).format(hemi=hemi)) if Path(name).suffix else self.roi_dir / f"{hemi}.{name}.mgz"

    def _per_vertex(self, paths: dict[str, Path], what: str) -> np.ndarray:
        return np.concatenate(
            [_vertex_values(paths[h], self.n_vertices[h], f"{h} {what}")[self.keep[h]] for h in HEMISPHERES]
        )

    def rois(self, families: Sequence[str], ctab_dir: Path) -> dict[str, np.ndarray]:
        columns = {}
        for family in families:
            paths = {h: self._roi_path(family, h) for h in HEMISPHERES}
            if not all(p.is_file() for p in paths.values()):
                logger.info("no %s ROI maps at %s; column skipped", family, paths["lh"])
                continue
            values = self._per_vertex(paths, f"{family} ROI map")
            columns[family] = label_names(values, _labels(family, ctab_dir), source=paths["lh"]).astype(str)
        return columns

    def read(self, files: Sequence[Path]) -> tuple[np.ndarray, np.dtype]:
        blocks, dtype = [], None
        for hemi, path in zip(HEMISPHERES, files):
            data, dtype = read_surface_data(path)
            if data.shape[0] != self.n_vertices[hemi]:
                raise DataFormatError(
                    f"{hemi} betas have a different vertex count",
                    path=path,
                    expected=f"{self.n_vertices[hemi]}",
                    found=f"{data.shape[0]}",
                )
            blocks.append(data[self.keep[hemi]])
        if blocks[0].shape[1] != blocks[1].shape[1]:
            raise DataFormatError(
                "lh and rh betas have different numbers of trials",
                path=files[1],
                expected=f"{blocks[0].shape[1]} (as {files[0].name})",
                found=f"{blocks[1].shape[1]}",
            )
        return np.concatenate(blocks), dtype

    def ncsnr(self) -> np.ndarray:
        return self._per_vertex({h: self.beta_dir / f"{h}.ncsnr.mgh" for h in HEMISPHERES}, "ncsnr map")

    def meta(self) -> dict:
        return {"n_vertices": dict(self.n_vertices)}


def _labels(family: str, ctab_dir: Path) -> dict[int, str]:
    ctab = ctab_dir / f"{family}.mgz.ctab"
    return resolve_labels(family, ctab if ctab.is_file() else None, ctab)


_SESSION = re.compile(r"(?:(lh|rh)\.)?betas_session(\d+)\.(nii\.gz|nii|mgh|mgz)$")


def _session_files(beta_dir: Path, kind: str) -> list[tuple[int, list[Path]]]:
    """(session number, files) per session: one NIfTI for volumes, ``[lh, rh]`` for surfaces."""
    sessions: dict[int, dict[str, Path]] = {}
    for path in beta_dir.glob("*betas_session*"):
        match = _SESSION.fullmatch(path.name)
        if match and (match.group(1) is None) == (kind == "volume"):
            sessions.setdefault(int(match.group(2)), {})[match.group(1) or "volume"] = path
    if not sessions:
        pattern = "betas_sessionNN.nii.gz" if kind == "volume" else "{lh,rh}.betas_sessionNN.mgh"
        raise MissingFileError(
            "no NSD beta files",
            path=beta_dir,
            expected=pattern,
            found=listing(beta_dir),
            fix="download the betas of this subject, space and beta version",
        )
    out = []
    for number, files in sorted(sessions.items()):
        if kind == "volume":
            out.append((number, [files["volume"]]))
            continue
        absent = [h for h in HEMISPHERES if h not in files]
        if absent:
            raise MissingFileError(
                f"session {number} lacks its {absent[0]} betas",
                path=beta_dir,
                expected=f"{absent[0]}.betas_session{number:02d}.mgh",
                found=listing(beta_dir),
            )
        out.append((number, [files[h] for h in HEMISPHERES]))
    return out


# ------------------------------------------------------------------------------------------ betas


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    """z-score each voxel (row) across trials (ddof=0); constant rows (e.g. out of the field of view) become 0."""
    x = x.astype(np.float64)
    x -= x.mean(1, keepdims=True)
    sd = x.std(1, keepdims=True)
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0).astype(np.float32)


def _trial_betas(reader, sessions, per_session: int, scale: float | str, zscore: bool) -> np.ndarray:
    """All trials of the sessions as (n_voxels, n_trials) float32."""
    blocks = []
    for number, files in progress(sessions, desc="NSD sessions", total=len(sessions)):
        raw, dtype = reader.read(files)
        if raw.shape[1] != per_session:
            raise DataFormatError(
                f"session {number} has a different number of trials",
                path=files[0],
                expected=f"{per_session} (as session {sessions[0][0]})",
                found=f"{raw.shape[1]}",
            )
        if scale == "auto":
            by = NSD_INT16_SCALE if np.issubdtype(dtype, np.integer) else 1.0
        else:
            by = float(scale)
        data = raw.astype(np.float32) / np.float32(by)
        blocks.append(_zscore_rows(data) if zscore else data)
    return np.concatenate(blocks, axis=1)


def _average_by_image(trials: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean response per image: (unique sorted ids, (n_images, n_voxels) float32, repeat counts)."""
    ids, inverse, counts = np.unique(images, return_inverse=True, return_counts=True)
    weights = scipy.sparse.csr_matrix(
        (1.0 / counts[inverse], (inverse, np.arange(images.size))), shape=(ids.size, images.size)
    )
    return ids, np.asarray(weights @ trials.T, dtype=np.float32), counts


def _header_trials(files: Sequence[Path]) -> int:
    """Trials per session, from the first beta file's header (last axis: NIfTI (X, Y, Z, T), MGH (V, 1, 1, T))."""
    shape = nib.load(files[0]).shape
    if len(shape) != 4:
        raise DataFormatError(
            "NSD beta files must be 4-D",
            path=files[0],
            expected="(X, Y, Z, trials) or MGH (vertices, 1, 1, trials)",
            found=f"shape {shape}",
        )
    return int(shape[3])


# ------------------------------------------------------------------------------------------ loader


def nsd_paths(root: str | Path, subject: str | int, space: str, betas: str) -> dict[str, Path]:
    """The NSD paths that :func:`load_nsd` reads for one subject, space and beta version."""
    root = Path(root)
    subj, _ = nsd_subject(subject)
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

    Returns
    -------
    Dataset
        Splits ``"train"`` (the subject's own images) and ``"test"`` (the shared 1000 images among those shown),
        ids ``"nsd-XXXXX"`` (0-based NSD id). ``voxels`` has ``hemisphere``, ``vertex``, ``i, j, k, x, y, z``
        (volumes), ROI columns and ``noise_ceiling`` (fraction 0..1 from ``ncsnr`` and the test split's repeat
        counts, when the ncsnr map exists). ``meta``: ``nsd_ids``, ``repeats`` (per split), ``ncsnr``,
        ``sessions``, ``trials_per_session``, ``coco_ids`` (when the stimulus table exists) and the grid
        (``affine``, ``shape``) or mesh sizes (``n_vertices``) for :func:`braincode.io.write_map`.

    Examples
    --------
    >>> ds = load_nsd("/data/nsd", 1, space="fsaverage", sessions=[1, 2])  # doctest: +SKIP
    >>> ds["test"].responses.shape  # doctest: +SKIP
    (n_shared_images_seen, n_vertices)
    """
    subj, row = nsd_subject(subject)
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
    reader = (_Surface if kind == "surface" else _Volume)(paths["betas"], Path(roi_dir or paths["roi"]), mask)
    found = _session_files(paths["betas"], kind)
    chosen = found if sessions is None else _select(found, sessions, paths["betas"])
    per_session = _header_trials(chosen[0][1])
    trial_ids = _trial_ids(design, row, [n for n, _ in chosen], per_session, paths["expdesign"])
    if images:
        _check_brick(paths["stimuli"], "imgBrick", int(trial_ids.max()))
    trials = _trial_betas(reader, chosen, per_session, scale, zscore)
    voxels = with_rois(reader.voxels, reader.rois(list(rois), paths["ctab"]))
    shared = np.isin(trial_ids, design.shared(row))
    splits, nsd_ids, repeats = {}, {}, {}
    for name, in_split in (("train", ~shared), ("test", shared)):
        ids = trial_ids[in_split]
        if average_repeats:
            ids, data, counts = _average_by_image(trials[:, in_split], ids)
        else:
            data, counts = trials[:, in_split].T, np.unique(ids, return_counts=True)[1]
        nsd_ids[name], repeats[name] = ids, counts
        splits[name] = data
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
        "loaded NSD %s %s: %d sessions x %d trials, %d train / %d test rows, %d voxels",
        subj,
        space,
        len(chosen),
        per_session,
        len(nsd_ids["train"]),
        len(nsd_ids["test"]),
        len(voxels),
    )
    return Dataset(splits=out, voxels=voxels, subject=subj, space=space, meta=meta)


def _select(found, sessions: Sequence[int], beta_dir: Path):
    available = dict(found)
    wanted = sorted({int(s) for s in sessions})
    absent = sorted(set(wanted) - set(available))
    if absent:
        raise MissingFileError(
            f"sessions {absent} not found",
            path=beta_dir,
            expected=f"sessions among {sorted(available)}",
            found=listing(beta_dir),
        )
    return [(s, available[s]) for s in wanted]


def _trial_ids(design: NSDDesign, row: int, numbers: list[int], per_session: int, path: Path) -> np.ndarray:
    """NSD id of every loaded trial, sessions in the order loaded."""
    last = max(numbers) * per_session
    if last > design.masterordering.size:
        raise DataFormatError(
            "the design lists fewer trials than the beta files hold",
            path=path,
            expected=f">= {last} trials ({max(numbers)} sessions x {per_session})",
            found=f"{design.masterordering.size}",
        )
    return np.concatenate(
        [design.trial_images(row, last)[(n - 1) * per_session : n * per_session] for n in numbers]
    )


def _ncsnr(reader, beta_dir: Path) -> np.ndarray | None:
    try:
        return reader.ncsnr().astype(np.float64)
    except MissingFileError:
        logger.warning("no ncsnr map in %s; the voxel table gets no noise_ceiling column", beta_dir)
        return None


def _stimuli(ids: np.ndarray, hdf5: Path | None) -> Stimuli:
    names = [f"nsd-{i:05d}" for i in ids.tolist()]
    return Stimuli(ids=names) if hdf5 is None else HDF5Stimuli(ids=names, hdf5=hdf5, rows=ids)
