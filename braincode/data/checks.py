"""Checks of a loaded dataset that a fit relies on: enough samples, captions present, real-valued betas.

Each either raises one :class:`~braincode.errors.BraincodeError` naming the file or folder to fix
(:func:`check_fittable`, :func:`require_captions`) or answers a question the fit diagnostics report
(:func:`integer_valued`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from braincode.data.core import Dataset
from braincode.errors import ConfigError, DataFormatError, MissingFileError

#: Rows read at once by :func:`integer_valued` (bounded memory on memory-mapped responses).
_CHUNK_ROWS = 256


def min_samples(n_folds: int) -> int:
    """Fewest samples that ``n_folds``-fold cross-validation nested in ``n_folds``-fold cross-validation needs.

    The outer folds hold out about ``n / n_folds`` samples; the rest must still split into ``n_folds`` inner
    folds, so ``n - ceil(n / n_folds) >= n_folds``. This is the strictest protocol a ridge fit runs (nested CV
    to score, inner CV to choose alphas); the plain protocol needs ``n_folds``.

    Examples
    --------
    >>> min_samples(5), min_samples(2)
    (7, 4)
    """
    if int(n_folds) != n_folds or n_folds < 2:
        raise ConfigError(
            "cross-validation needs at least 2 folds", found=repr(n_folds), fix="pass cv=2 or more (default 5)"
        )
    n = n_folds
    while n - -(-n // n_folds) < n_folds:
        n += 1
    return n


def check_fittable(dataset: Dataset, *, n_folds: int = 5, split: str = "train") -> None:
    """Raise unless ``split`` has measured responses for enough samples to be fitted with ``n_folds``-fold CV.

    Parameters
    ----------
    dataset : Dataset
        A loaded dataset; ``meta["source"]`` (set by :func:`braincode.data.layouts.load_subject`) is the file or
        folder named in the error.
    n_folds : int
        Folds of the cross-validation (``braincode fit --cv``).
    split : str
        The split to fit.

    Raises
    ------
    DataFormatError
        When the split is absent, has no responses, or has fewer samples than :func:`min_samples`.
    ConfigError
        When ``n_folds`` is below 2.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from braincode.data.core import Dataset, Responses, Split, Stimuli
    >>> vox = pd.DataFrame({"hemisphere": ["lh"], "vertex": [0]})
    >>> one = Dataset({"train": Split(Stimuli(["a"]), Responses(np.zeros((1, 1)), vox))}, vox, "s", "fsaverage",
    ...               meta={"source": "data/subj01/training_split/training_images"})
    >>> check_fittable(one)
    Traceback (most recent call last):
    ...
    braincode.errors.DataFormatError: data/subj01/training_split/training_images: 1 training samples are too few ...
    """
    source = dataset.meta.get("source")
    responses = dataset.splits[split].responses if split in dataset.splits else None
    if responses is None:
        raise DataFormatError(
            f"the dataset has no measured {split!r} responses to fit",
            path=source,
            expected=f"a {split!r} split with responses",
            found=f"splits {sorted(dataset.splits)}",
            fix="point at the subject's training data",
        )
    check_samples(responses.shape[0], n_folds, source, split)


def check_samples(n: int, n_folds: int, source: str | Path | None, split: str = "train") -> None:
    """Raise naming ``source`` when ``n`` samples are fewer than ``n_folds``-fold cross-validation needs."""
    need = min_samples(n_folds)
    if n < need:
        raise DataFormatError(
            f"{n} {split}ing samples are too few for {n_folds}-fold cross-validation",
            path=source,
            expected=f"at least {need} samples (images with responses) for {n_folds}-fold cross-validation",
            found=f"{n}",
            fix=f"add images and their responses, or lower the number of folds (--cv; {need} samples allow "
            f"{n_folds})",
        )


def require_captions(dataset: Dataset, splits: Sequence[str] | None = None) -> None:
    """Raise unless every stimulus of ``splits`` (all by default) has a caption, naming the captions file to add.

    Call it before extracting text features, so that a missing file is reported before any work is done.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from braincode.data.core import Dataset, Split, Stimuli
    >>> vox = pd.DataFrame({"hemisphere": ["lh"], "vertex": [0]})
    >>> ds = Dataset({"train": Split(Stimuli(["a"]))}, vox, "subj01", "fsaverage",
    ...              meta={"captions_path": "data/subj01/captions.csv"})
    >>> require_captions(ds)
    Traceback (most recent call last):
    ...
    braincode.errors.MissingFileError: data/subj01/captions.csv: the stimuli have no captions; ...
    """
    names = list(dataset.splits) if splits is None else list(splits)
    lacking = [s for s in names if dataset[s].stimuli.captions is None]
    if not lacking:
        return
    path = dataset.meta.get("captions_path")
    raise MissingFileError(
        "the stimuli have no captions",
        path=path,
        expected="a caption for every image: captions.csv with columns image (the image file name) and caption"
        + ("" if path else ", which this data format does not read"),
        found=f"no captions for the {' and '.join(lacking)} images",
        fix=f"write {path}" if path else "use a format that reads captions (Algonauts, NIfTI or surface folder)",
    )


def integer_valued(data: np.ndarray) -> bool:
    """Whether every finite value of ``data`` is a whole number (e.g. unscaled int16 betas stored as floats).

    Real-valued responses almost never are; integer ones usually mean a missing scale factor (NSD stores
    betas x 300). Reads ``data`` in row chunks, so memory-mapped responses stay on disk, and stops at the
    first fractional value.

    Examples
    --------
    >>> integer_valued(np.array([[1.0, -3.0], [600.0, 2.0]])), integer_valued(np.array([[0.5, 2.0]]))
    (True, False)
    """
    data = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        return True
    if data.size == 0:
        return False
    rows = data.reshape(data.shape[0], -1) if data.ndim else data.reshape(1, 1)
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        block = np.asarray(rows[start : start + _CHUNK_ROWS], dtype=np.float64)
        finite = block[np.isfinite(block)]
        if np.any(finite != np.round(finite)):
            return False
    return True
