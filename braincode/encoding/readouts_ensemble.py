"""An ensemble of token-readout runs: the same readout trained N times from different seeds, predictions averaged.

The transformer brain encoder's paper averages several trained runs; :class:`ReadoutEnsemble` does that for any
token readout. Every run sees the same training and validation rows (the split is drawn once), so the ensemble's
``validation_r_`` is the validation r of the averaged prediction.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone

from braincode import persist
from braincode.encoding.metrics import pearson_r
from braincode.encoding.readouts_base import (
    VALIDATION_SCORE,
    PearsonScores,
    Rows,
    check_responses,
    check_tokens,
    validation_split,
)
from braincode.errors import ConfigError, NotFittedError


class ReadoutEnsemble(PearsonScores, BaseEstimator):
    """The average of ``n_runs`` fits of ``readout`` with seeds ``random_state``, ``random_state + 1``, ...

    Parameters
    ----------
    readout : TokenReadout
        An unfitted :class:`~braincode.encoding.RoutingReadout` or
        :class:`~braincode.encoding.FactorizedReadout`; its ``random_state`` seeds the first run and the split.
    n_runs : int
        Number of runs averaged.

    Examples
    --------
    >>> from braincode.encoding import FactorizedReadout
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 4, 3)).astype(np.float32); Y = X[:, 1, :2]
    >>> ens = ReadoutEnsemble(FactorizedReadout(max_epochs=3, device="cpu"), n_runs=2).fit(X, Y)
    >>> ens.predict(X).shape, len(ens.members_), ens.validation_r_.shape
    ((60, 2), 2, (2,))
    """

    def __init__(self, readout: Any, n_runs: int = 5) -> None:
        self.readout, self.n_runs = readout, n_runs

    def fit(self, X: np.ndarray, Y: np.ndarray, voxels: Any = None, *,
            X_val: np.ndarray | None = None, Y_val: np.ndarray | None = None) -> ReadoutEnsemble:
        """Fit every run on the same split (drawn once with the readout's seed); see ``TokenReadout.fit``."""
        if not isinstance(self.n_runs, int) or self.n_runs < 1:
            raise ConfigError("n_runs must be a positive integer", found=repr(self.n_runs))
        X = check_tokens(X, "X")
        Y = check_responses(Y, len(X))
        self.validation_index_ = None
        if X_val is None or Y_val is None:
            train, val = validation_split(len(X), self.readout.validation_fraction, self.readout.random_state)
            X, X_val, Y, Y_val = Rows(X, train), Rows(X, val), Rows(Y, train), Y[val]
            self.validation_index_ = val
        seed = self.readout.random_state
        self.members_ = [clone(self.readout).set_params(random_state=seed + i).fit(X, Y, voxels, X_val=X_val,
                                                                                   Y_val=Y_val)
                         for i in range(self.n_runs)]
        self.validation_r_ = pearson_r(np.asarray(Y_val), self.predict(X_val)).astype(np.float32)
        self.stopped_improving_ = any(m.stopped_improving_ for m in self.members_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise NotFittedError("this ReadoutEnsemble is not fitted", fix="call fit(X, Y) first")

    @property
    def fit_info_(self) -> dict:
        """The runs' facts: how the score was obtained, each run's summary, whether any stopped improving."""
        self._check_fitted()
        return {"readout": f"ReadoutEnsemble({type(self.readout).__name__} x {self.n_runs})",
                "score": VALIDATION_SCORE + ", of the averaged prediction",
                "validation_r": round(float(np.mean(self.validation_r_)), 6),
                "stopped_improving": self.stopped_improving_, "runs": [m.history_.summary() for m in self.members_]}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean of the runs' predictions, ``(n, n_voxels)`` float32."""
        self._check_fitted()
        return np.mean([m.predict(X) for m in self.members_], axis=0).astype(np.float32)

    def _get_state(self) -> tuple[dict, dict]:
        self._check_fitted()
        configs, tensors = [], {"validation_r": self.validation_r_}
        for i, member in enumerate(self.members_):
            config, state = member._get_state()
            configs.append(config)
            tensors.update({f"run{i}.{k}": v for k, v in state.items()})
        member_class = f"{type(self.readout).__module__}.{type(self.readout).__qualname__}"
        return {"member_class": member_class, "n_runs": self.n_runs, "members": configs,
                "stopped_improving": self.stopped_improving_}, tensors

    @classmethod
    def _from_state(cls, config: dict, tensors: dict, device: torch.device) -> ReadoutEnsemble:
        module_name, _, name = config["member_class"].rpartition(".")
        member_cls = getattr(importlib.import_module(module_name), name)
        members = []
        for i, member_config in enumerate(config["members"]):
            prefix = f"run{i}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            members.append(member_cls._from_state(member_config, state, device))
        self = cls(clone(members[0]).set_params(random_state=members[0].random_state), config["n_runs"])
        self.members_, self.validation_r_ = members, tensors["validation_r"].numpy()
        self.stopped_improving_, self.validation_index_ = config["stopped_improving"], None
        return self

    def save(self, folder: str | Path) -> Path:
        """Write with :func:`braincode.persist.save` (read back with :func:`braincode.persist.load`)."""
        return persist.save(self, folder)
