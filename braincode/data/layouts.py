"""One way in for every loader: :func:`load_subject` finds the layout of a data folder and loads one subject.

Layouts recognised (``format=``), in the order ``"auto"`` tries them:

``"nsd"``
    An NSD root holding ``nsddata/`` and ``nsddata_betas/`` (:func:`braincode.data.load_nsd`).
``"algonauts"``
    A folder of ``subjNN/`` folders of the Algonauts 2023 challenge, or one such ``subjNN/`` folder
    (:func:`braincode.data.load_algonauts`).
``"volume"``
    A folder (``<root>/<subject>/`` when it exists, else ``<root>``) holding NIfTI files::

        betas*.nii.gz or betas*.nii       4-D (X, Y, Z, samples); several are concatenated in name order
        mask.nii.gz or mask.nii           voxels > 0 are kept
        stimuli.txt                       one image path per line (relative to the folder), one per sample
        captions.csv                      optional: columns image (file name), caption
        noise_ceiling.nii.gz              optional: per-voxel noise ceiling (0..1)
        rois/<family>.nii.gz              optional label volumes (names from rois/<family>.ctab or the NSD atlas)

``"surface"``
    The same for surface maps (GIFTI ``.gii`` or FreeSurfer ``.mgh``/``.mgz``)::

        lh.betas*.<ext>, rh.betas*.<ext>  (n_vertices, samples) per hemisphere
        lh.mask.<ext>, rh.mask.<ext>      optional: vertices > 0 are kept
        stimuli.txt, captions.csv         as above
        lh.noise_ceiling.<ext>, ...       optional
        rois/lh.<family>.<ext>, rois/rh.<family>.<ext>   optional label maps (+ rois/<family>.ctab)

Every loaded :class:`~braincode.data.core.Dataset` records ``meta["format"]``, ``meta["source"]`` (the file or
folder its training responses come from, named in errors such as :func:`braincode.data.checks.check_fittable`'s)
and ``meta["captions_path"]`` (where captions are read from, named by
:func:`braincode.data.checks.require_captions`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from braincode.data._maps import listing, read_path_list
from braincode.data.algonauts import load_algonauts, validate_algonauts
from braincode.data.captions import read_captions
from braincode.data.checks import check_fittable
from braincode.data.core import HEMISPHERES, Dataset, Stimuli
from braincode.data.nsd import load_nsd
from braincode.data.subjects import subject_id
from braincode.data.surface import SURFACE_SUFFIXES, load_surface
from braincode.data.volume import load_nifti
from braincode.errors import BraincodeError, ConfigError, DataFormatError, MissingFileError

FORMATS = ("algonauts", "nsd", "volume", "surface")

_LOOKED_FOR = (
    "an NSD root (nsddata/ and nsddata_betas/)",
    "an Algonauts 2023 folder (subjNN/training_split/)",
    "a NIfTI folder (betas*.nii[.gz] + mask.nii[.gz] + stimuli.txt)",
    "a surface folder (lh.betas*.gii|mgh|mgz + rh.betas*... + stimuli.txt)",
)


def _volume_betas(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("betas*.nii*") if p.name.endswith((".nii", ".nii.gz")))


def _surface_betas(folder: Path, hemi: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"{hemi}.betas*") if p.name.endswith(SURFACE_SUFFIXES))


def _one(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").is_file()), None)


def _folder(root: Path, subject: str | int | None) -> Path:
    """``<root>/<subject>`` (as given, or as ``subjNN``) when that folder exists, else ``root``."""
    if subject is None:
        return root
    for name in dict.fromkeys([str(subject), _safe_subject_id(subject)]):
        if name and (root / name).is_dir():
            return root / name
    return root


def _safe_subject_id(subject: str | int) -> str | None:
    try:
        return subject_id(subject)
    except ConfigError:
        return None


def _is_nsd(root: Path) -> bool:
    return (root / "nsddata_betas").is_dir() and (root / "nsddata").is_dir()


def _is_algonauts(root: Path) -> bool:
    return (root / "training_split").is_dir() or any(
        (p / "training_split").is_dir() for p in root.glob("subj*") if re.fullmatch(r"subj\d+", p.name)
    )


def detect_format(root: str | Path, subject: str | int | None = None) -> str:
    """The layout of a data folder: ``"nsd"``, ``"algonauts"``, ``"volume"`` or ``"surface"`` (module docstring).

    Raises
    ------
    MissingFileError
        When ``root`` does not exist.
    DataFormatError
        When the folder matches no layout; the message lists what was looked for and what the folder holds.

    Examples
    --------
    >>> import tempfile
    >>> from braincode.data.synthetic import make_synthetic
    >>> detect_format(make_synthetic(tempfile.mkdtemp(), n_train=8, n_test=2))
    'algonauts'
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError("the data folder does not exist", path=root, fix="check the path")
    if _is_nsd(root):
        return "nsd"
    if _is_algonauts(root):
        return "algonauts"
    folder = _folder(root, subject)
    if _volume_betas(folder):
        return "volume"
    if all(_surface_betas(folder, h) for h in HEMISPHERES):
        return "surface"
    raise DataFormatError(
        "cannot tell the layout of the data folder",
        path=folder,
        expected="one of: " + "; ".join(_LOOKED_FOR),
        found=listing(folder),
        fix="arrange the folder as one of these layouts (see braincode.data.layouts), or pass the format",
    )


def _only_subject(found: list[str], where: Path, subject: str | int | None, what: str) -> str:
    if subject is not None:
        return str(subject)
    if len(found) == 1:
        return found[0]
    raise ConfigError(
        f"which subject? the {what} holds {len(found) or 'no'} subjects",
        path=where,
        expected="a subject, e.g. subject='subj01' (--subject subj01)",
        found=f"subjects {found}" if found else listing(where),
        fix="pass one of the subjects found",
    )


def _load_algonauts(root: Path, subject: str | int | None, **options: Any) -> Dataset:
    if (root / "training_split").is_dir():  # the subject folder itself
        root, subject = root.parent, subject if subject is not None else root.name
    found = sorted(p.name for p in root.glob("subj*") if (p / "training_split").is_dir())
    return load_algonauts(root, _only_subject(found, root, subject, "folder"), **options)


def _load_nsd(root: Path, subject: str | int | None, **options: Any) -> Dataset:
    ppdata = root / "nsddata_betas" / "ppdata"
    found = sorted(p.name for p in ppdata.glob("subj*") if p.is_dir()) if ppdata.is_dir() else []
    return load_nsd(root, _only_subject(found, ppdata, subject, "NSD beta folder"), **options)


def _stimuli(folder: Path) -> Stimuli:
    listing_file = folder / "stimuli.txt"
    if not listing_file.is_file():
        raise MissingFileError(
            "the stimulus list is missing",
            path=listing_file,
            expected="stimuli.txt: one image path per line (relative to the folder), one per sample",
            found=listing(folder),
            fix="write the image of each sample (volume / column), in acquisition order, into stimuli.txt",
        )
    paths = read_path_list(listing_file)
    captions = read_captions(folder / "captions.csv", [Path(p).name for p in paths])
    return Stimuli(
        ids=[Path(p).stem for p in paths],
        paths=paths,
        captions=None if captions is None else [captions[Path(p).name] for p in paths],
    )


def _rois_volume(folder: Path) -> dict[str, dict]:
    rois = {p.name.split(".nii")[0]: p for p in sorted((folder / "rois").glob("*.nii*"))}
    return {"rois": rois, "roi_labels": _ctabs(folder, rois)}


def _ctabs(folder: Path, families) -> dict[str, Path]:
    return {f: folder / "rois" / f"{f}.ctab" for f in families if (folder / "rois" / f"{f}.ctab").is_file()}


def _load_volume(root: Path, subject: str | int | None, **options: Any) -> Dataset:
    folder = _folder(root, subject)
    betas, mask = _volume_betas(folder), _one(folder, "mask", (".nii.gz", ".nii"))
    if not betas or mask is None:
        raise MissingFileError(
            "the NIfTI folder lacks its betas or mask",
            path=folder,
            expected="betas*.nii[.gz] (4-D) and mask.nii[.gz]",
            found=listing(folder),
            fix="put the 4-D betas and the 3-D mask in the folder under these names",
        )
    stimuli = _stimuli(folder)
    nc = _one(folder, "noise_ceiling", (".nii.gz", ".nii"))
    ds = load_nifti(betas, mask, stimuli, noise_ceiling=nc, subject=str(subject or folder.name),
                    **_rois_volume(folder), **options)
    ds.meta.update(source=betas[0] if len(betas) == 1 else folder, captions_path=folder / "captions.csv")
    return ds


def _per_hemi(folder: Path, stem: str) -> dict[str, Path] | None:
    found = {h: _one(folder, f"{h}.{stem}", SURFACE_SUFFIXES) for h in HEMISPHERES}
    return found if all(found.values()) else None  # type: ignore[return-value]


def _load_surface(root: Path, subject: str | int | None, **options: Any) -> Dataset:
    folder = _folder(root, subject)
    betas = {h: _surface_betas(folder, h) for h in HEMISPHERES}
    if not all(betas.values()):
        raise MissingFileError(
            "the surface folder lacks betas for a hemisphere",
            path=folder,
            expected="lh.betas*.gii|mgh|mgz and rh.betas*.gii|mgh|mgz",
            found=listing(folder),
            fix="put one or more beta maps per hemisphere in the folder under these names",
        )
    stems = {p.name.split(".", 1)[1] for p in (folder / "rois").glob("*h.*") if p.name.endswith(SURFACE_SUFFIXES)}
    families = sorted({re.sub(r"\.(gii|mgh|mgz)$", "", s) for s in stems})
    rois = {f: maps for f in families if (maps := _per_hemi(folder / "rois", f))}
    ds = load_surface(betas, _stimuli(folder), mask=_per_hemi(folder, "mask"), rois=rois,
                      roi_labels=_ctabs(folder, rois), noise_ceiling=_per_hemi(folder, "noise_ceiling"),
                      subject=str(subject or folder.name), **options)
    ds.meta.update(source=folder, captions_path=folder / "captions.csv")
    return ds


_LOADERS: dict[str, tuple[Callable[..., Dataset], Callable[..., Dataset]]] = {
    "algonauts": (_load_algonauts, load_algonauts),
    "nsd": (_load_nsd, load_nsd),
    "volume": (_load_volume, load_nifti),
    "surface": (_load_surface, load_surface),
}
#: Options the folder layouts fill in themselves (not accepted from the caller).
_FILLED = {"rois", "roi_labels", "noise_ceiling", "mask", "subject", "stimuli"}


def _check_options(fmt: str, options: dict) -> None:
    params = inspect.signature(_LOADERS[fmt][1]).parameters
    allowed = sorted(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and (fmt == "nsd" or n not in _FILLED))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"options not understood by the {fmt} loader",
            expected=f"some of {allowed}",
            found=f"{unknown}",
            fix="drop them, or pick the format they belong to",
        )


def load_subject(
    root: str | Path, subject: str | int | None = None, *, format: str = "auto", **options: Any
) -> Dataset:
    """Load one subject from any supported layout, detecting the layout unless ``format`` names it.

    Parameters
    ----------
    root : str or Path
        The data folder (module docstring: NSD root, Algonauts folder, NIfTI or surface folder).
    subject : str or int, optional
        ``"subj01"``, ``1``, or the subject folder's name; optional when the folder holds one subject (and for
        a NIfTI/surface folder without subject folders).
    format : {"auto", "algonauts", "nsd", "volume", "surface"}
    **options
        Passed to the layout's loader: e.g. ``check_images`` (Algonauts), ``space``, ``sessions``, ``mask``
        (NSD), ``scale``, ``space``, ``split`` (NIfTI and surface folders).

    Returns
    -------
    Dataset
        As the layout's loader returns it, with ``meta["format"]``, ``meta["source"]`` and
        ``meta["captions_path"]``. NIfTI and surface folders give one split, ``"train"``.

    Raises
    ------
    DataFormatError
        When the layout cannot be told (the message lists the layouts looked for and what the folder holds).
    ConfigError
        For an unknown format or option, or a missing subject where the folder holds several.

    Examples
    --------
    >>> import tempfile
    >>> from braincode.data.synthetic import make_synthetic
    >>> ds = load_subject(make_synthetic(tempfile.mkdtemp(), n_train=8, n_test=2))
    >>> ds.subject, ds.meta["format"], ds["train"].responses.shape[0]
    ('subj01', 'algonauts', 8)
    """
    if format != "auto" and format not in FORMATS:
        raise ConfigError("unknown data format", expected=f"'auto' or one of {FORMATS}", found=repr(format))
    root = Path(root)
    fmt = detect_format(root, subject) if format == "auto" else format
    _check_options(fmt, options)
    ds = _LOADERS[fmt][0](root, subject, **options)
    ds.meta["format"] = fmt
    return ds


def validate_subject(
    root: str | Path, subject: str | int | None = None, *, format: str = "auto", n_folds: int = 5, **options: Any
) -> list[str]:
    """Every problem that would stop ``braincode fit`` on this subject, as messages (empty when it can be fitted).

    The Algonauts layout is checked completely (:func:`~braincode.data.algonauts.validate_algonauts`, which
    also decodes every image); other layouts are loaded. Then :func:`~braincode.data.checks.check_fittable`
    checks that there are enough training samples for ``n_folds``-fold cross-validation.

    Examples
    --------
    >>> import tempfile
    >>> from braincode.data.synthetic import make_synthetic
    >>> validate_subject(make_synthetic(tempfile.mkdtemp(), n_train=8, n_test=2))
    []
    >>> validate_subject(make_synthetic(tempfile.mkdtemp(), n_train=2, n_test=1))[0]  # doctest: +ELLIPSIS
    '.../subj01/training_split/training_images: 2 training samples are too few for 5-fold cross-validation; ...'
    """
    try:
        fmt = detect_format(root, subject) if format == "auto" else format
        if fmt == "algonauts":
            path = Path(root)
            if (path / "training_split").is_dir():
                path, subject = path.parent, subject if subject is not None else path.name
            found = sorted(p.name for p in path.glob("subj*") if (p / "training_split").is_dir())
            return validate_algonauts(path, _only_subject(found, path, subject, "folder"), n_folds=n_folds)
        check_fittable(load_subject(root, subject, format=fmt, **options), n_folds=n_folds)
    except BraincodeError as exc:
        return [str(exc)]
    return []

