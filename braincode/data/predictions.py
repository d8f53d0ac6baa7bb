"""The Algonauts 2023 submission format: test-set predictions as ``{lh,rh}_pred_test.npy``, one per hemisphere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from braincode.data._npy import save_arrays_atomic
from braincode.data.core import HEMISPHERES
from braincode.errors import DataFormatError

_SHOW = 5  # how many offending items a message lists


def hemisphere_slices(voxels: pd.DataFrame) -> dict[str, slice]:
    """Column range of each hemisphere in the responses (hemispheres must be contiguous, lh first).

    Parameters
    ----------
    voxels : DataFrame
        A voxel table with a ``hemisphere`` column, e.g. ``Dataset.voxels``.

    Returns
    -------
    dict of str to slice
        ``{"lh": slice(0, n_lh), "rh": slice(n_lh, n_lh + n_rh)}`` for the hemispheres present.

    Examples
    --------
    >>> import pandas as pd
    >>> hemisphere_slices(pd.DataFrame({"hemisphere": ["lh", "lh", "rh"], "vertex": [0, 5, 2]}))
    {'lh': slice(0, 2, None), 'rh': slice(2, 3, None)}
    """
    hemi = voxels["hemisphere"].to_numpy()
    slices = {}
    for h in HEMISPHERES:
        idx = np.flatnonzero(hemi == h)
        if idx.size == 0:
            continue
        if idx[-1] - idx[0] + 1 != idx.size:
            raise DataFormatError(
                f"the {h} voxels are not contiguous in the voxel table",
                expected="all lh rows first, then all rh rows",
                found=f"{h} rows between {idx[0]} and {idx[-1]} interleaved with others",
                fix="order the voxel table (and the response columns) by hemisphere",
            )
        slices[h] = slice(int(idx[0]), int(idx[-1]) + 1)
    others = sorted(set(hemi.tolist()) - set(HEMISPHERES))
    if others:
        raise DataFormatError(
            "the voxel table has unknown hemispheres",
            expected="'lh' or 'rh'",
            found=f"{others[:_SHOW]}",
            fix="use the voxel table of a surface (fsaverage) dataset",
        )
    return slices


def write_algonauts_predictions(
    out_dir: str | Path, predictions: np.ndarray, voxels: pd.DataFrame
) -> dict[str, Path]:
    """Write test-set predictions as the challenge's ``lh_pred_test.npy`` and ``rh_pred_test.npy``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created if needed), e.g. ``submission/subj01``.
    predictions : ndarray of shape (n_test, n_voxels)
        Predicted responses, columns ordered as ``voxels`` (lh then rh).
    voxels : DataFrame
        The dataset's voxel table.

    Returns
    -------
    dict of str to Path
        Hemisphere -> written file (float32, shape (n_test, n_vertices of that hemisphere)). Both files are
        written to temporary names first and then renamed, so a failure leaves neither behind.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile
    >>> voxels = pd.DataFrame({"hemisphere": ["lh", "lh", "rh"], "vertex": [0, 5, 2]})
    >>> paths = write_algonauts_predictions(tempfile.mkdtemp(), np.zeros((4, 3)), voxels)
    >>> np.load(paths["lh"]).shape, np.load(paths["rh"]).dtype
    ((4, 2), dtype('float32'))
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[1] != len(voxels) or predictions.dtype.kind not in "fiu":
        raise DataFormatError(
            "predictions do not match the voxel table",
            expected=f"a numeric array of shape (n_test, {len(voxels)})",
            found=f"shape {predictions.shape}, dtype {predictions.dtype}",
            fix="predict every voxel of the dataset, columns in the order of Dataset.voxels",
        )
    if not np.isfinite(predictions).all():
        bad = np.unique(np.nonzero(~np.isfinite(predictions))[1])
        raise DataFormatError(
            "predictions hold NaN or inf",
            expected="finite numbers",
            found=f"non-finite values in columns {bad[:_SHOW].tolist()}",
            fix="check the model's inputs and fit; the challenge rejects non-finite predictions",
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {h: out / f"{h}_pred_test.npy" for h in hemisphere_slices(voxels)}
    save_arrays_atomic(
        {files[h]: predictions[:, s].astype(np.float32) for h, s in hemisphere_slices(voxels).items()}
    )
    return files
