"""The training loop shared by the torch readouts: AdamW, gradient clipping, early stopping on validation r.

The loop knows nothing about the readout's architecture: it takes a :class:`torch.nn.Module` whose
``forward(tokens)`` returns predictions ``(batch, n_voxels)`` and whose optional ``penalty()`` returns a scalar
regulariser, plus training and validation arrays (numpy or memory-mapped, converted one batch at a time).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from braincode.devices import resolve_device
from braincode.encoding.metrics import pearson_r
from braincode.errors import ConfigError, DataFormatError
from braincode.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of :func:`train_readout` (defaults: the transformer brain encoder's published ones).

    Parameters
    ----------
    lr, weight_decay : float
        AdamW learning rate and decoupled weight decay.
    batch_size : int
        Stimuli per step.
    max_epochs : int
        Upper bound on passes over the training set.
    patience : int
        Stop after this many epochs without a better validation r.
    grad_clip : float or None
        Maximum global gradient norm (``None``: no clipping).
    """

    lr: float = 5e-4
    weight_decay: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 15
    patience: int = 5
    grad_clip: float | None = 0.1

    def __post_init__(self) -> None:
        for name in ("lr", "batch_size", "max_epochs", "patience"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"training setting {name} must be positive", found=repr(getattr(self, name)))
        if self.weight_decay < 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise ConfigError("weight_decay must be >= 0 and grad_clip > 0 or None",
                              found=f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}")


@dataclass
class TrainHistory:
    """What happened during :func:`train_readout`.

    Attributes
    ----------
    train_loss : list of float
        Mean training loss (data term plus penalty) per epoch.
    val_r : list of float
        Mean validation Pearson r over voxels per epoch.
    best_epoch : int
        Epoch (0-based) whose weights were kept.
    patience : int
        The early-stopping patience the run used.
    val_r_voxels : ndarray or None
        Validation Pearson r per voxel of the kept epoch.
    """

    train_loss: list[float] = field(default_factory=list)
    val_r: list[float] = field(default_factory=list)
    best_epoch: int = -1
    patience: int = 0
    val_r_voxels: np.ndarray | None = None

    @property
    def best_val_r(self) -> float:
        """Validation r of the kept epoch."""
        return self.val_r[self.best_epoch]

    @property
    def stopped_improving(self) -> bool:
        """True when the run ended at its epoch limit while validation r was still improving: early stopping
        never triggered and the kept epoch is one of the last ``min(patience, 3)`` (more epochs may help)."""
        return bool(self.val_r) and len(self.val_r) - 1 - self.best_epoch < min(self.patience, 3)

    def summary(self) -> dict:
        """JSON-able facts about the run: epochs run, best epoch, its validation r and whether it converged.

        Examples
        --------
        >>> TrainHistory(val_r=[0.1, 0.3, 0.2], best_epoch=1, patience=1).summary()["stopped_improving"]
        False
        """
        if not self.val_r:  # not trained here (e.g. the authors' weights)
            return {"epochs_run": 0, "stopped_improving": False}
        return {"epochs_run": len(self.val_r), "best_epoch": self.best_epoch,
                "validation_r": round(float(self.best_val_r), 6), "patience": self.patience,
                "stopped_improving": bool(self.stopped_improving)}


def _batch(x: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    # Sorted indices read memory-mapped arrays sequentially; the order inside a batch does not matter.
    return torch.from_numpy(np.ascontiguousarray(x[np.sort(index)], dtype=np.float32)).to(device)


def predict_batches(module: nn.Module, X: np.ndarray, *, batch_size: int, device: torch.device) -> np.ndarray:
    """Predictions of ``module`` for every row of ``X``, in eval mode and without gradients, as float32 numpy.

    Examples
    --------
    >>> import numpy as np, torch
    >>> lin = torch.nn.Linear(3, 2)
    >>> predict_batches(lin, np.zeros((5, 3), np.float32), batch_size=2, device=torch.device("cpu")).shape
    (5, 2)
    """
    was_training = module.training
    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            index = np.arange(start, min(start + batch_size, len(X)))
            out.append(module(_batch(X, index, device)).float().cpu().numpy())
    module.train(was_training)
    return np.concatenate(out, axis=0)


def train_readout(
    module: nn.Module,
    X_train: np.ndarray,
    Y_train: np.ndarray,
    X_val: np.ndarray,
    Y_val: np.ndarray,
    *,
    config: TrainConfig = TrainConfig(),
    random_state: int = 0,
    device: str | torch.device = "auto",
    desc: str = "readout",
) -> TrainHistory:
    """Fit ``module`` by AdamW on the mean squared error plus ``module.penalty()``; keep the best validation epoch.

    Each epoch shuffles the training rows with a generator seeded by ``random_state`` (dropout draws from torch's
    global generator, which is seeded and restored around the call), so the same seed gives the same weights.
    After the last epoch the module holds the weights of the epoch with the highest mean validation Pearson r.

    Parameters
    ----------
    module : nn.Module
        ``module(x)`` maps a float32 batch of ``X`` rows to ``(batch, n_voxels)`` predictions.
    X_train, X_val : ndarray of shape (n, ...)
        Inputs (numpy, memmap, or anything indexable by sorted row indices), read one batch at a time.
    Y_train, Y_val : ndarray of shape (n, n_voxels)
        Targets (standardise them beforehand: the loss weighs every voxel alike); ``Y_train`` is read one batch
        at a time like ``X_train``, ``Y_val`` is an array.
    config : TrainConfig
        Optimiser and stopping settings.
    random_state : int
        Seed of the shuffling and of dropout.
    device : str or torch.device
        Where to train; the module is moved there.
    desc : str
        Label of the progress bar, which shows the running validation r.

    Returns
    -------
    TrainHistory

    Examples
    --------
    >>> import numpy as np, torch
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype(np.float32); Y = X @ rng.normal(size=(4, 3)).astype(np.float32)
    >>> hist = train_readout(torch.nn.Linear(4, 3), X[:160], Y[:160], X[160:], Y[160:],
    ...                      config=TrainConfig(lr=0.05, max_epochs=20, grad_clip=None), device="cpu")
    >>> hist.best_val_r > 0.99
    True
    """
    if len(X_train) != len(Y_train) or len(X_val) != len(Y_val):
        raise DataFormatError("inputs and targets must have one row per stimulus",
                              expected="len(X_train) == len(Y_train) and len(X_val) == len(Y_val)",
                              found=f"{len(X_train)}/{len(Y_train)} and {len(X_val)}/{len(Y_val)}")
    if len(X_val) < 3:
        raise DataFormatError("early stopping needs a validation set", expected="at least 3 validation rows",
                              found=str(len(X_val)), fix="pass more stimuli or a larger validation fraction")
    device = resolve_device(device)
    module.to(device)
    params = [p for p in module.parameters() if p.requires_grad]
    # the fused kernel: one pass over each parameter (the readout of 40k voxels x 768 dominates a CPU step)
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    shuffler = np.random.default_rng(random_state)
    history = TrainHistory(patience=config.patience)
    best_state = copy.deepcopy(module.state_dict())
    epochs = progress(range(config.max_epochs), desc=desc, total=config.max_epochs)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(random_state)
        for epoch in epochs:
            module.train()
            order = shuffler.permutation(len(X_train))
            total, steps = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                x, y = _batch(X_train, index, device), _batch(Y_train, index, device)
                loss = torch.mean((module(x) - y) ** 2)
                if hasattr(module, "penalty"):
                    loss = loss + module.penalty()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
                optimiser.step()
                total, steps = total + loss.item(), steps + 1
            val_pred = predict_batches(module, X_val, batch_size=max(config.batch_size, 64), device=device)
            val_r_voxels = pearson_r(Y_val, val_pred)
            val_r = float(np.mean(val_r_voxels))
            history.train_loss.append(total / steps)
            history.val_r.append(val_r)
            if history.best_epoch < 0 or val_r > history.best_val_r:
                history.best_epoch, history.val_r_voxels = epoch, val_r_voxels
                best_state = copy.deepcopy(module.state_dict())
            if hasattr(epochs, "set_postfix"):
                epochs.set_postfix(val_r=f"{val_r:.3f}", best=f"{history.best_val_r:.3f}")
            log.debug("%s epoch %d: loss %.4f, validation r %.4f", desc, epoch, total / steps, val_r)
            if epoch - history.best_epoch >= config.patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    log.info("%s: kept epoch %d of %d, validation r %.3f", desc, history.best_epoch + 1, len(history.val_r),
             history.best_val_r)
    if history.stopped_improving:
        log.warning("%s stopped at its limit of %d epochs while validation r was still improving (best epoch %d); "
                    "raise max_epochs", desc, config.max_epochs, history.best_epoch + 1)
    return history
