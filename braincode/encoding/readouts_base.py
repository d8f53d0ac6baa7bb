"""What every token readout shares: input checks, the validation split, training, prediction, scores, saving.

A token readout is a scikit-learn estimator on token maps ``X`` of shape ``(n, T, D)`` (prefix tokens first, then
the patch grid row-major) and responses ``Y`` ``(n, n_voxels)``. :meth:`TokenReadout.fit` holds out a validation
split for early stopping (:func:`~braincode.encoding.training.train_readout`) and keeps what it learned about the
run: ``validation_r_`` (Pearson r per voxel on the validation rows, at the kept epoch; a *validation* score, not a
cross-validated or test one), ``stopped_improving_`` (the epoch limit ended the run while validation r was still
rising) and ``fit_info_``. Models save through :mod:`braincode.persist` (``braincode.persist.load(folder)``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from braincode import persist
from braincode.devices import resolve_device
from braincode.encoding.metrics import pearson_r
from braincode.encoding.training import TrainConfig, TrainHistory, predict_batches, train_readout
from braincode.errors import ConfigError, DataFormatError, NotFittedError

#: How the ``validation_r_`` of a token readout was obtained (written next to every score it gives).
VALIDATION_SCORE = "validation (early-stopping split of the training data)"


def check_tokens(X: Any, what: str = "X") -> Any:
    """``X`` itself when it has the shape of token maps ``(n, T, D)``; a teaching error otherwise."""
    if not hasattr(X, "shape") or len(X.shape) != 3:
        raise DataFormatError(f"{what} must be token maps", expected="an array of shape (n_stimuli, n_tokens, n_features)",
                              found=f"shape {getattr(X, 'shape', type(X).__name__)}",
                              fix='extract a "blocks.{i}" layer (tokens), not "pooled"')
    return X


def infer_grid(n_patches: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    """The patch grid: ``grid`` checked against ``n_patches``, or a square one.

    Examples
    --------
    >>> infer_grid(12, (3, 4)), infer_grid(16, None)
    ((3, 4), (4, 4))
    """
    if grid is None:
        side = math.isqrt(n_patches)
        grid = (side, side)
    grid = (int(grid[0]), int(grid[1]))
    if grid[0] * grid[1] != n_patches:
        raise DataFormatError("cannot lay the patch tokens on a grid",
                              expected=f"grid rows x columns == {n_patches} patch tokens",
                              found=f"grid {grid}", fix="pass grid=(rows, cols) and the right num_prefix_tokens")
    return grid


class Rows:
    """Rows ``index`` of a (possibly memory-mapped) array, read only when indexed: the subset is never copied."""

    def __init__(self, data: np.ndarray, index: np.ndarray) -> None:
        self.data, self.index = data, np.asarray(index)
        self.shape = (len(self.index), *data.shape[1:])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.data[self.index[key]]


def validation_split(n: int, fraction: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) row indices: a random ``fraction`` of ``n`` rows (at least 3) held out.

    Examples
    --------
    >>> train, val = validation_split(20, 0.2, 0)
    >>> len(train), len(val), len(set(train) | set(val))
    (16, 4, 20)
    """
    if not 0 < fraction < 1:
        raise ConfigError("validation_fraction must be in (0, 1)", found=str(fraction))
    order = np.random.default_rng(random_state).permutation(n)
    n_val = max(3, round(fraction * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def check_responses(Y: Any, n: int, batch: int = 1024) -> Any:
    """``Y`` ``(n, n_voxels)`` checked for shape and NaN batch by batch (a float32 memory map stays one)."""
    if not hasattr(Y, "shape") or getattr(Y, "dtype", None) != np.float32:
        Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or len(Y) != n:
        raise DataFormatError("responses must be (n_stimuli, n_voxels) with one row per token map",
                              expected=f"shape ({n}, n_voxels)", found=f"shape {Y.shape}")
    if not all(np.isfinite(Y[s:s + batch]).all() for s in range(0, n, batch)):
        raise DataFormatError("responses contain NaN or infinite values", fix="drop or impute those voxels")
    return Y


def column_stats(Y: Any, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (1 where constant) of each column, float32, summed in float64 by batches.

    Examples
    --------
    >>> column_stats(np.array([[1.0, 2.0], [3.0, 2.0]]))
    (array([2., 2.], dtype=float32), array([1., 1.], dtype=float32))
    """
    total = square = 0.0
    for s in range(0, len(Y), batch):
        part = np.asarray(Y[s:s + batch], dtype=np.float64)
        total, square = total + part.sum(0), square + (part * part).sum(0)
    mean = total / len(Y)
    std = np.sqrt(np.maximum(square / len(Y) - mean**2, 0.0))
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


class Standardized:
    """``(Y[rows] - mean) / scale`` read row batch by row batch: the standardised targets are never copied whole."""

    def __init__(self, data: Any, mean: np.ndarray, scale: np.ndarray) -> None:
        self.data, self.mean, self.scale = data, mean, scale
        self.shape = data.shape

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return (np.asarray(self.data[key], dtype=np.float32) - self.mean) / self.scale


class PearsonScores:
    """``score_voxels`` and ``score`` for a class with ``predict(X)``: the readouts' and their ensemble's scores."""

    def score_voxels(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Pearson r per voxel between ``Y`` and the predictions for ``X``."""
        return pearson_r(Y, self.predict(X))

    def score(self, X: np.ndarray, Y: np.ndarray) -> float:
        """Mean over voxels of :meth:`score_voxels` (one float, as scikit-learn expects)."""
        return float(np.mean(self.score_voxels(X, Y)))


class TokenReadout(PearsonScores, BaseEstimator):
    """Fit/predict/score/save shared by the token readouts; subclasses build the torch module.

    Subclasses implement ``_build_module(d_in, n_voxels, extra, tensors)`` and may implement
    ``_fit_extra(n_voxels, voxels) -> (extra, tensors)`` for data-dependent structure (e.g. query masks).
    """

    def _build_module(self, d_in: int, n_voxels: int, extra: dict[str, Any],
                      tensors: dict[str, torch.Tensor]) -> nn.Module:
        raise NotImplementedError

    def _fit_extra(self, n_voxels: int, voxels: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {}

    def _train_config(self) -> TrainConfig:
        return TrainConfig(lr=self.lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                           max_epochs=self.max_epochs, patience=self.patience, grad_clip=self.grad_clip)

    def fit(self, X: np.ndarray, Y: np.ndarray, voxels: Any = None, *,
            X_val: np.ndarray | None = None, Y_val: np.ndarray | None = None) -> TokenReadout:
        """Train on tokens ``X`` (n, T, D) and responses ``Y`` (n, n_voxels); early-stop on a validation split.

        Without ``X_val``/``Y_val`` a random ``validation_fraction`` of the training rows (drawn with
        ``random_state``) is held out; their positions are kept in ``validation_index_``. ``voxels`` (the voxel
        table, one row per column of ``Y``) gives the ROI queries of ``RoutingReadout(queries="roi")``.
        """
        X = check_tokens(X, "X")
        Y = check_responses(Y, len(X))
        config = self._train_config()
        self.validation_index_ = None
        if X_val is None or Y_val is None:
            train, val = validation_split(len(X), self.validation_fraction, self.random_state)
            X, X_val, Y, Y_val = Rows(X, train), Rows(X, val), Rows(Y, train), Y[val]
            self.validation_index_ = val
        X_val = check_tokens(X_val, "X_val")
        Y_val = check_responses(Y_val, len(X_val))
        grid = infer_grid(X.shape[1] - self.num_prefix_tokens, self.grid)
        extra, tensors = self._fit_extra(Y.shape[1], voxels)
        extra["grid"] = list(grid)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            module = self._build_module(X.shape[2], Y.shape[1], extra, tensors)
        module.standardize.set_statistics(X)
        self.y_mean_, self.y_scale_ = column_stats(Y)
        self.history_: TrainHistory = train_readout(
            module, X, Standardized(Y, self.y_mean_, self.y_scale_), X_val,
            (np.asarray(Y_val) - self.y_mean_) / self.y_scale_, config=config, random_state=self.random_state,
            device=resolve_device(self.device), desc=type(self).__name__)
        self.module_, self.n_features_in_, self.n_voxels_ = module, X.shape[2], Y.shape[1]
        self.extra_, self.n_tokens_ = extra, X.shape[1]
        self.validation_r_ = np.asarray(self.history_.val_r_voxels, dtype=np.float32)
        self.stopped_improving_ = bool(self.history_.stopped_improving)
        return self

    @property
    def fit_info_(self) -> dict:
        """What the fit did, for summaries: the run (epochs, best epoch, convergence) and how r was obtained."""
        self._check_fitted()
        return {"readout": type(self).__name__, "score": VALIDATION_SCORE, **self.history_.summary()}

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted", fix="call fit(X, Y) or load() first")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted responses ``(n, n_voxels)``, float32 (tokens read batch by batch: memory maps are fine)."""
        self._check_fitted()
        X = check_tokens(X, "X")
        n_tokens = self.n_tokens_ if self.n_tokens_ is not None else X.shape[1]
        if tuple(X.shape[1:]) != (n_tokens, self.n_features_in_):
            raise DataFormatError("the tokens differ from those the readout was fitted on",
                                  expected=f"(n, {n_tokens}, {self.n_features_in_})", found=str(X.shape),
                                  fix="extract the same model layer as for fitting")
        device = next(self.module_.parameters()).device
        z = predict_batches(self.module_, X, batch_size=4 * self.batch_size, device=device)
        return z * self.y_scale_ + self.y_mean_

    # ------------------------------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict, dict]:
        self._check_fitted()
        tensors = {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}
        tensors.update(y_mean=self.y_mean_, y_scale=self.y_scale_, validation_r=self.validation_r_)
        h = self.history_
        config = {"params": self.get_params(), "n_features_in": self.n_features_in_, "n_voxels": self.n_voxels_,
                  "n_tokens": self.n_tokens_, "extra": self.extra_,
                  "history": {"train_loss": h.train_loss, "val_r": h.val_r, "best_epoch": h.best_epoch,
                              "patience": h.patience}}
        return config, tensors

    @classmethod
    def _from_state(cls, config: dict, tensors: dict, device: torch.device) -> TokenReadout:
        self = cls(**config["params"])
        self.y_mean_, self.y_scale_ = tensors.pop("y_mean").numpy(), tensors.pop("y_scale").numpy()
        self.validation_r_ = tensors.pop("validation_r").numpy()
        self.module_ = self._build_module(config["n_features_in"], config["n_voxels"], config["extra"], tensors)
        self.module_.load_state_dict(tensors)
        self.module_.to(device).eval()
        self.n_features_in_, self.n_voxels_ = config["n_features_in"], config["n_voxels"]
        self.n_tokens_, self.extra_ = config["n_tokens"], config["extra"]
        self.history_ = TrainHistory(**config["history"], val_r_voxels=self.validation_r_)
        self.stopped_improving_ = bool(self.history_.stopped_improving) if self.history_.val_r else False
        self.validation_index_ = None
        return self

    def save(self, folder: str | Path) -> Path:
        """Write the fitted readout with :func:`braincode.persist.save`; read it back with
        :func:`braincode.persist.load` (or :meth:`load`).

        Examples
        --------
        >>> folder = readout.save("out/routing")  # doctest: +SKIP
        >>> again = persist.load(folder)  # doctest: +SKIP
        """
        return persist.save(self, folder)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> TokenReadout:
        """Load a readout saved by :meth:`save`, checking that it is a ``cls``."""
        model = persist.load(folder, device=device)
        if not isinstance(model, cls):
            raise DataFormatError("the saved model is not this kind of readout", path=Path(folder),
                                  expected=cls.__name__, found=type(model).__name__)
        return model
