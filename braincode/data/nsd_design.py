"""NSD's experimental design: which image each trial showed, and the shared images (``nsd_expdesign.mat``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from braincode.data._maps import listing
from braincode.errors import DataFormatError, MissingFileError


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


def trial_ids(design: NSDDesign, row: int, numbers: list[int], per_session: int, path: Path) -> np.ndarray:
    """NSD id of every trial of the 1-based sessions ``numbers`` of ``per_session`` trials, in the order given."""
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
