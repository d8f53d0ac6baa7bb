"""Token readouts: voxel responses from a frozen backbone's patch tokens, trained end to end in torch.

- :class:`RoutingReadout` — the transformer brain encoder (Adeli, Sun & Kriegeskorte 2025) as published: one
  learned query per ROI per hemisphere plus an "unknown" query cross-attend to the patch tokens through the
  authors' decoder layer; a vertex sums the readouts of every ROI it is in (:mod:`.readouts_routing`). Checked to
  1e-5 against a forward pass of the authors' code (``tests/fixtures/routing``); :meth:`RoutingReadout.from_reference`
  and :func:`load_reference_checkpoint` take their weights. Per-voxel queries (``queries="voxel"``) are the
  authors' ``readout_res='voxels'``.
- :class:`~braincode.encoding.readouts_factorized.FactorizedReadout` — spatial x feature factorization.
- :class:`~braincode.encoding.readouts_ensemble.ReadoutEnsemble` — the average of N runs (the paper ensembles).

All are scikit-learn estimators on token arrays ``(n, T, D)`` that early-stop on a validation split and say how
their scores were obtained (``validation_r_``, ``stopped_improving_``, ``fit_info_``); they save through
:mod:`braincode.persist`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from braincode import persist
from braincode.devices import resolve_device
from braincode.encoding.readouts_base import TokenReadout
from braincode.encoding.readouts_ensemble import ReadoutEnsemble
from braincode.encoding.readouts_factorized import FactorizedReadout
from braincode.encoding.readouts_reference import block_masks, check_args, module_state, read_checkpoint
from braincode.encoding.readouts_routing import RoutingModule, roi_query_masks
from braincode.encoding.training import TrainHistory
from braincode.errors import ConfigError, DataFormatError

__all__ = ["ROUTING_PRESETS", "FactorizedReadout", "ReadoutEnsemble", "RoutingReadout", "load_readout",
           "load_reference_checkpoint", "roi_query_masks"]

#: Named sizes of :class:`RoutingReadout`. ``"published"`` is the paper's (DINOv2 ViT-B/14 tokens, no input
#: projection); ``"cpu"`` is a smaller decoder for CPUs (not the paper's: tokens wider than 256 go through a
#: learned Linear projection first).
ROUTING_PRESETS: dict[str, dict[str, Any]] = {
    "published": {"d_model": 768, "n_heads": 16, "d_ff": 1024, "dropout": 0.1, "lr": 5e-4, "batch_size": 16},
    "cpu": {"d_model": 256, "n_heads": 8, "d_ff": 512, "dropout": 0.1, "lr": 1e-3, "batch_size": 16},
}


class RoutingReadout(TokenReadout):
    """The transformer brain encoder's attention-routing readout as a scikit-learn estimator.

    Parameters
    ----------
    queries : "roi" or "voxel"
        ``"roi"`` (published): one query per ROI per hemisphere plus an "unknown" query per hemisphere, from the
        voxel table passed to :meth:`fit` (:func:`roi_query_masks`); ``"voxel"``: one query per voxel.
    families : list of str, optional
        ROI families for ``"roi"`` queries (default: every family of the voxel table).
    d_model, n_heads, d_ff, dropout
        Decoder size (published: 768, 16, 1024, 0.1; see :data:`ROUTING_PRESETS`). Tokens of another width go
        through a learned Linear projection to ``d_model``.
    num_prefix_tokens : int
        Leading non-patch tokens of ``X`` (class token, registers) to drop.
    grid : (int, int) or None
        Patch grid; ``None``: square.
    standardize_tokens : bool
        Z-score token features with training statistics (not in the paper; off by default).
    lr, weight_decay, batch_size, grad_clip
        AdamW and clipping (published 5e-4, 1e-4, 16, 0.1).
    max_epochs, patience
        Early stopping on validation r: up to ``max_epochs`` epochs, stopping after ``patience`` without a better
        one, the best epoch kept. The paper trains 15 epochs and keeps the best validation epoch; the default
        budget is larger so that runs end by convergence (``stopped_improving_`` says when one did not).
    validation_fraction : float
        Share of the training rows held out for early stopping when no validation set is passed.
    backend : str
        :func:`braincode.kernels.attention` backend.
    voxel_chunk : int
        Voxel queries decoded at once (``queries="voxel"``).
    random_state : int
        Seed of initialisation, validation split, shuffling and dropout.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 17, 8)).astype(np.float32)       # 1 class token + 4x4 patches
    >>> Y = X[:, 1:, :2].mean(1)                                  # two voxels
    >>> voxels = pd.DataFrame({"hemisphere": ["lh", "rh"], "roi:floc-faces": ["FFA-1", ""]})
    >>> model = RoutingReadout(d_model=16, n_heads=2, d_ff=16, num_prefix_tokens=1, max_epochs=2,
    ...                        device="cpu").fit(X, Y, voxels)
    >>> model.predict(X).shape, model.query_labels_
    ((60, 2), ['lh/FFA-1', 'lh/unknown', 'rh/unknown'])
    """

    def __init__(self, queries: str = "roi", *, families: list[str] | None = None, d_model: int = 768,
                 n_heads: int = 16, d_ff: int = 1024, dropout: float = 0.1, num_prefix_tokens: int = 0,
                 grid: tuple[int, int] | None = None, standardize_tokens: bool = False, lr: float = 5e-4,
                 weight_decay: float = 1e-4, batch_size: int = 16, max_epochs: int = 60, patience: int = 5,
                 grad_clip: float | None = 0.1, validation_fraction: float = 0.1, backend: str = "auto",
                 voxel_chunk: int = 1024, random_state: int = 0, device: str = "auto") -> None:
        self.queries, self.families, self.d_model, self.n_heads = queries, families, d_model, n_heads
        self.d_ff, self.dropout, self.num_prefix_tokens, self.grid = d_ff, dropout, num_prefix_tokens, grid
        self.standardize_tokens, self.lr, self.weight_decay = standardize_tokens, lr, weight_decay
        self.batch_size, self.max_epochs, self.patience, self.grad_clip = batch_size, max_epochs, patience, grad_clip
        self.validation_fraction, self.backend, self.voxel_chunk = validation_fraction, backend, voxel_chunk
        self.random_state, self.device = random_state, device

    @classmethod
    def from_preset(cls, preset: str = "published", **params: Any) -> RoutingReadout:
        """A readout with the sizes of :data:`ROUTING_PRESETS` ``[preset]``, ``params`` overriding them.

        Examples
        --------
        >>> RoutingReadout.from_preset("cpu", random_state=1).d_model
        256
        """
        if preset not in ROUTING_PRESETS:
            raise ConfigError("unknown routing preset", expected=" or ".join(ROUTING_PRESETS), found=repr(preset))
        return cls(**{**ROUTING_PRESETS[preset], **params})

    def _fit_extra(self, n_voxels: int, voxels: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if self.queries == "voxel":
            return {"query_labels": None}, {}
        if self.queries != "roi":
            raise ConfigError("unknown query mode", expected='"roi" or "voxel"', found=repr(self.queries))
        if not isinstance(voxels, pd.DataFrame) or len(voxels) != n_voxels:
            raise ConfigError('queries="roi" needs the voxel table (one row per voxel) to build ROI queries',
                              expected=f"fit(X, Y, voxels) with a DataFrame of {n_voxels} rows",
                              found="none" if voxels is None else f"{type(voxels).__name__} of length {len(voxels)}",
                              fix="fit(X, Y, dataset.voxels), or use queries='voxel'")
        masks, labels = roi_query_masks(voxels, self.families)
        return {"query_labels": labels}, {"query_masks": torch.from_numpy(masks).float()}

    def _build_module(self, d_in: int, n_voxels: int, extra: dict[str, Any],
                      tensors: dict[str, torch.Tensor]) -> RoutingModule:
        grid = extra.get("grid")
        return RoutingModule(d_in, tensors.get("query_masks"), n_voxels, per_voxel=self.queries == "voxel",
                             d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, dropout=self.dropout,
                             num_prefix_tokens=self.num_prefix_tokens, standardize_tokens=self.standardize_tokens,
                             grid=None if grid is None else tuple(grid), backend=self.backend,
                             voxel_chunk=self.voxel_chunk)

    @property
    def query_labels_(self) -> list[str]:
        """Label of each learned query: ``"lh/FFA-1"``, ..., ``"lh/unknown"``; ``"voxel i"`` per voxel."""
        self._check_fitted()
        labels = self.extra_.get("query_labels")
        return list(labels) if labels is not None else [f"voxel {i}" for i in range(self.n_voxels_)]

    @classmethod
    def from_reference(cls, state_dict: dict[str, Any], config: dict[str, Any], lh_roi_masks: Any = None,
                       rh_roi_masks: Any = None, *, device: str = "cpu") -> RoutingReadout:
        """A fitted readout with the authors' weights (their parameter names and arguments).

        Parameters
        ----------
        state_dict : dict
            Their ``brain_encoder`` state dict (backbone keys are ignored), e.g. a checkpoint's ``"model"``.
        config : dict
            Their arguments, as the fixture's ``config.json`` (under ``"args"``) or a plain dict.
        lh_roi_masks, rh_roi_masks : array of shape (queries, vertices)
            Their 0/1 query assignment per hemisphere (``roi_masks``; :func:`reference_query_masks` builds it
            from challenge-space label arrays). Not needed with ``readout_res='voxels'``.

        Returns
        -------
        RoutingReadout
            ``predict(tokens)`` takes ``(n, T, D)`` row-major patch tokens without prefix tokens and returns
            ``(n, n_lh + n_rh)``, left hemisphere first.
        """
        args = dict(config.get("args", config))
        check_args(args)
        per_voxel = args.get("readout_res") == "voxels"
        state = module_state(state_dict)
        n_voxels, d_model = state["readout_weight"].shape
        self = cls("voxel" if per_voxel else "roi", d_model=int(args.get("hidden_dim", d_model)),
                   n_heads=int(args["nheads"]), d_ff=int(args.get("dim_feedforward", state["linear1.weight"].shape[0])),
                   dropout=float(args.get("dropout", 0.1)), device=device)
        labels = None
        if not per_voxel:
            if lh_roi_masks is None or rh_roi_masks is None:
                raise ConfigError("readout_res='rois_all' needs both hemispheres' ROI masks",
                                  fix="pass lh_roi_masks and rh_roi_masks (see reference_query_masks)")
            masks = block_masks(lh_roi_masks, rh_roi_masks)
            if masks.shape != (len(state["query_embed"]), n_voxels):
                raise DataFormatError("the ROI masks do not match the weights",
                                      expected=f"(queries, vertices) summing to {tuple(state['query_embed'].shape[:1])}"
                                               f" queries and {n_voxels} vertices", found=str(masks.shape))
            state["query_masks"] = torch.from_numpy(masks)
            n_lh = len(np.asarray(lh_roi_masks))
            names = [config.get("lh_query_names"), config.get("rh_query_names")]
            labels = [f"{h}/{n}" for h, hemi in zip(("lh", "rh"), names) for n in hemi] if all(names) else \
                [f"lh/query {i}" for i in range(n_lh)] + [f"rh/query {i}" for i in range(len(masks) - n_lh)]
        self.module_ = self._build_module(d_model, n_voxels, {}, state)
        weight = state.pop("readout_weight")
        self.module_.load_state_dict({**self.module_.state_dict(), **state})  # untouched: token statistics
        self.module_.set_vertex_weight(weight)
        self.module_.to(resolve_device(device)).eval()
        self.n_features_in_, self.n_voxels_, self.n_tokens_ = d_model, n_voxels, None
        self.extra_ = {"query_labels": labels, "grid": None, "source": "authors' weights"}
        self.y_mean_, self.y_scale_ = np.zeros(n_voxels, np.float32), np.ones(n_voxels, np.float32)
        self.validation_r_ = np.full(n_voxels, np.nan, np.float32)
        self.history_, self.stopped_improving_, self.validation_index_ = TrainHistory(), False, None
        return self


def load_reference_checkpoint(path: str | Path, lh_roi_masks: Any = None, rh_roi_masks: Any = None, *,
                              device: str = "cpu") -> RoutingReadout:
    """A :class:`RoutingReadout` from a ``checkpoint.pth`` that the authors' ``main.py --save_model 1`` wrote.

    The checkpoint holds no ROI masks: pass the ones the run used (``roi_masks`` of their code, which
    :func:`~braincode.encoding.readouts_reference.reference_query_masks` reproduces from the challenge-space
    label files). The tokens to predict from are DINOv2's ``blocks.11.q`` without the class token.

    Examples
    --------
    >>> model = load_reference_checkpoint("run_1/checkpoint.pth", lh_masks, rh_masks)  # doctest: +SKIP
    """
    state, args = read_checkpoint(path)
    return RoutingReadout.from_reference(state, {"args": args}, lh_roi_masks, rh_roi_masks, device=device)


def load_readout(folder: str | Path, device: str = "cpu") -> TokenReadout | ReadoutEnsemble:
    """Load any token readout saved with ``save(folder)`` (:func:`braincode.persist.load` does the same).

    Examples
    --------
    >>> model = load_readout("out/routing")  # doctest: +SKIP
    """
    model = persist.load(folder, device=device)
    if not isinstance(model, (TokenReadout, ReadoutEnsemble)):
        raise DataFormatError("the saved model is not a token readout", path=Path(folder),
                              expected="RoutingReadout, FactorizedReadout or ReadoutEnsemble", found=type(model).__name__)
    return model
