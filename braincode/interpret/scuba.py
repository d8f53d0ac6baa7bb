"""BrainSCUBA: captions for voxels and ROIs from a linear encoder on normalised image embeddings.

1. A linear encoder maps L2-normalised image embeddings (e.g. CLIP ViT-B/32, D = 512) to voxels
   (:func:`fit_encoder`: braincode's ridge, or the published AdamW recipe).
2. Each voxel's weight vector ``w`` is projected onto a bank of natural-image embeddings ``M_j``:
   ``s = softmax(temperature * w_hat . M_hat_j)``; the projection is ``normalise(sum_j s_j M_hat_j) * sum_j s_j |M_j|``
   (:func:`project`, streaming over the bank with :func:`braincode.kernels.softmax_project`).
3. A caption decoder (:mod:`braincode.interpret.decoders`) turns each projection into words; an ROI's caption
   decodes the mean of its voxels' projections (:func:`caption_rois`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from braincode.atomic import atomic_write
from braincode.data.rois import roi_means as voxel_roi_means
from braincode.errors import ConfigError, DataFormatError, MissingFileError
from braincode.interpret.bank import EmbeddingBank

log = logging.getLogger(__name__)

#: Softmax temperature of the published projection.
TEMPERATURE = 150.0
#: Default size of one chunk of bank rows read at a time.
_KEY_CHUNK_BYTES = 64 * 2**20


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class _UnitAndNorm:
    """Row-sliceable ``[unit | norm]`` (n, D + 1) of a bank, read one chunk at a time; the memory-mapped pages of
    each chunk are handed back to the OS once copied, so the resident set stays bounded on any bank size."""

    def __init__(self, bank: EmbeddingBank) -> None:
        self.bank = bank
        self.shape = (len(bank), bank.dim + 1)

    def __getitem__(self, rows: slice) -> np.ndarray:
        from braincode.kernels.streaming import release_rows

        start, stop, _ = rows.indices(self.shape[0])
        out = np.empty((stop - start, self.shape[1]), dtype=np.float32)
        out[:, :-1] = self.bank.unit[start:stop]
        out[:, -1] = self.bank.norms[start:stop]
        for array in (self.bank.unit, self.bank.norms):
            release_rows(array, start, stop)
        return out


def project(
    weights: np.ndarray,
    bank: EmbeddingBank,
    *,
    temperature: float = TEMPERATURE,
    key_chunk: int | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Project voxel weight vectors onto the bank (BrainSCUBA's softmax projection), streaming over the bank.

    Parameters
    ----------
    weights : ndarray of shape (n_voxels, D)
        Encoder weights in the bank's embedding space (one row per voxel).
    bank : EmbeddingBank
        Unit embeddings and norms; may be memory-mapped: only ``key_chunk`` rows are read at a time.
    temperature : float
        Softmax temperature (150 in BrainSCUBA).
    key_chunk : int, optional
        Bank rows per step; memory is O(n_voxels * key_chunk + key_chunk * D) whatever the bank size (default:
        64 MiB of bank rows, fewer when the score tile would pass 256 MiB).
    device : {"auto", "cpu", "cuda"}

    Returns
    -------
    ndarray of shape (n_voxels, D), float32
        ``normalise(sum_j s_j M_hat_j) * sum_j s_j |M_j|`` per voxel.

    Examples
    --------
    >>> import numpy as np
    >>> from braincode.interpret.bank import bank_from_arrays
    >>> bank = bank_from_arrays(["a", "b"], np.array([[2.0, 0.0], [0.0, 1.0]]))
    >>> project(np.array([[1.0, 0.0]]), bank).round(3).tolist()
    [[2.0, 0.0]]
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] != bank.dim:
        raise DataFormatError("voxel weights do not live in the bank's embedding space",
                              expected=f"(n_voxels, {bank.dim}) for bank {bank.model_id or '(unnamed)'}",
                              found=str(w.shape), fix="fit the encoder on embeddings of the bank's model and layer")
    if not temperature > 0:
        raise ConfigError("the softmax temperature must be positive", found=repr(temperature), fix="e.g. 150")
    from braincode.devices import resolve_device
    from braincode.kernels import softmax_project
    from braincode.kernels.streaming import default_key_chunk

    # One read of the bank per chunk: keys [M_hat | |M|] scored by [w_hat | 0] give the softmax over w_hat . M_hat
    # and, as their own values, both the mean unit embedding and the mean norm.
    queries = torch.from_numpy(np.pad(_unit_rows(w), ((0, 0), (0, 1)))).to(resolve_device(device))
    if key_chunk is None:
        key_chunk = max(1024, min(default_key_chunk(len(w)), _KEY_CHUNK_BYTES // (4 * (bank.dim + 1))))
    out = softmax_project(queries, _UnitAndNorm(bank), temperature=temperature, key_chunk=key_chunk)
    out = out.double().cpu().numpy()
    direction, norm = out[:, :-1], out[:, -1:]
    return (direction / np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12) * norm).astype(np.float32)


def roi_means(values: np.ndarray, voxels: pd.DataFrame, family: str, rois: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean row of ``values`` (n_voxels, D) over each ROI of ``family``; returns ``roi``, ``voxels`` and ``mean``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> vox = pd.DataFrame({"roi:floc-faces": ["FFA-1", "", "FFA-1"]})
    >>> roi_means(np.array([[1.0], [5.0], [3.0]]), vox, "floc-faces")["mean"].tolist()
    [array([2.])]
    """
    spec = family if rois is None else [f"{family}:{roi}" for roi in rois]
    return voxel_roi_means(values, voxels, spec)[["roi", "voxels", "mean"]]


def caption_voxels(projections: np.ndarray, decoder) -> list[str]:
    """Decode each voxel's projection (n_voxels, D) with ``decoder`` (any :class:`CaptionDecoder`).

    Examples
    --------
    >>> import numpy as np
    >>> from braincode.interpret.decoders import RetrievalDecoder
    >>> caption_voxels(np.array([[0.1, 2.0]]), RetrievalDecoder(["a face", "a house"], np.eye(2)))
    ['a house']
    """
    return decoder.decode(np.asarray(projections, dtype=np.float32))


def caption_rois(
    projections: np.ndarray,
    voxels: pd.DataFrame,
    family: str,
    decoder,
    *,
    rois: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One caption per ROI of ``family``: the decoded mean of its voxels' projections.

    Returns
    -------
    DataFrame
        ``family``, ``roi``, ``voxels`` (count) and ``caption``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from braincode.interpret.decoders import RetrievalDecoder
    >>> vox = pd.DataFrame({"roi:floc-faces": ["FFA-1", "FFA-1", "OFA"]})
    >>> proj = np.array([[1.0, 0.0], [0.6, 0.5], [0.0, 1.0]])
    >>> caption_rois(proj, vox, "floc-faces", RetrievalDecoder(["a face", "a house"], np.eye(2)))["caption"].tolist()
    ['a face', 'a house']
    """
    table = roi_means(projections, voxels, family, rois)
    captions = decoder.decode(np.stack(table["mean"].to_list()).astype(np.float32))
    return pd.DataFrame({"family": family, "roi": table["roi"], "voxels": table["voxels"], "caption": captions})


# ------------------------------------------------------------------------------------------ the encoder


#: Files of a saved BrainSCUBA encoder; named apart from ``braincode fit``'s encoder so both can share a folder.
WEIGHTS, CONFIG, VOXELS = "scuba_encoder.safetensors", "scuba_encoder.json", "scuba_voxels.csv"


@dataclass(frozen=True)
class LinearEncoder:
    """Voxel-wise linear map from L2-normalised embeddings: ``y = normalise(x) @ coef.T + intercept``.

    Saved as ``scuba_encoder.safetensors`` (coef, intercept) + ``scuba_encoder.json`` (model id, method) +
    ``scuba_voxels.csv``.
    """

    coef: np.ndarray
    intercept: np.ndarray
    voxels: pd.DataFrame
    model_id: str = ""
    method: str = "ridge"

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted responses (n, n_voxels) of raw embeddings (n, D) (normalised here)."""
        return _unit_rows(embeddings) @ self.coef.T + self.intercept

    def save(self, folder: str | Path) -> Path:
        """Write the encoder into ``folder`` (each file atomically)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        tensors = {"coef": np.ascontiguousarray(self.coef, np.float32),
                   "intercept": np.ascontiguousarray(self.intercept, np.float32)}
        atomic_write(folder / WEIGHTS, lambda p: save_file(tensors, str(p)))
        atomic_write(folder / VOXELS, lambda p: self.voxels.to_csv(p, index=False))
        info = {"model_id": self.model_id, "method": self.method, "n_voxels": int(self.coef.shape[0]),
                "dim": int(self.coef.shape[1]), "input": "L2-normalised embeddings"}
        atomic_write(folder / CONFIG, lambda p: p.write_text(json.dumps(info, indent=2)))
        return folder


def load_encoder(folder: str | Path) -> LinearEncoder:
    """Read an encoder written by :meth:`LinearEncoder.save`."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    missing = [n for n in (WEIGHTS, CONFIG, VOXELS) if not (folder / n).is_file()]
    if missing:
        raise MissingFileError("no BrainSCUBA encoder in the folder", path=folder,
                               expected=f"{WEIGHTS}, {CONFIG}, {VOXELS}", found=f"missing {missing}",
                               fix="fit one with `braincode caption --fit FOLDER --data ROOT --subject S ...`")
    tensors = load_file(str(folder / WEIGHTS))
    info = json.loads((folder / CONFIG).read_text())
    voxels = pd.read_csv(folder / VOXELS, keep_default_na=False)
    return LinearEncoder(tensors["coef"], tensors["intercept"], voxels, info.get("model_id", ""),
                         info.get("method", "ridge"))


def fit_encoder(
    embeddings: np.ndarray,
    responses: np.ndarray,
    voxels: pd.DataFrame,
    *,
    method: str = "ridge",
    model_id: str = "",
    alphas: Sequence[float] | None = None,
    cv: int = 5,
    train_config=None,
    random_state: int = 0,
    device: str = "auto",
) -> LinearEncoder:
    """Fit BrainSCUBA's linear encoder on L2-normalised ``embeddings`` (n, D) -> ``responses`` (n, n_voxels).

    ``method="ridge"``: :class:`braincode.encoding.estimators.RidgeEncoder` with per-voxel alphas chosen by
    ``cv``-fold CV. ``method="adamw"``: the published recipe (AdamW lr 3e-4, weight decay 1.5e-2, batch 32, up to
    100 epochs on the MSE, 10% held out for early stopping) through :func:`braincode.encoding.training.train_readout`;
    ``train_config`` (a :class:`~braincode.encoding.training.TrainConfig`) replaces those settings.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> x = np.random.default_rng(0).standard_normal((50, 4))
    >>> y = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ np.array([[1.0], [0.0], [0.0], [0.0]])
    >>> enc = fit_encoder(x, y, pd.DataFrame({"hemisphere": ["lh"], "vertex": [0]}), alphas=[1e-6], device="cpu")
    >>> enc.coef.round(2).tolist()
    [[1.0, 0.0, 0.0, 0.0]]
    """
    x = _unit_rows(embeddings)
    y = np.asarray(responses, dtype=np.float32)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or y.shape[1] != len(voxels):
        raise DataFormatError("embeddings, responses and voxel table disagree",
                              expected="(n, D), (n, n_voxels) and n_voxels voxel rows",
                              found=f"{x.shape}, {y.shape} and {len(voxels)} rows")
    if method == "ridge":
        from braincode.encoding.estimators import RidgeEncoder

        kwargs = {"cv": cv, "device": device}
        if alphas is not None:
            kwargs["alphas"] = np.asarray(alphas, dtype=float)
        ridge = RidgeEncoder(**kwargs).fit(x, y)
        coef, intercept = np.asarray(ridge.coef_), np.asarray(ridge.intercept_)
    elif method == "adamw":
        from braincode.encoding.training import TrainConfig, train_readout

        rng = np.random.default_rng(random_state)
        order = rng.permutation(len(x))
        val, train = order[: max(len(x) // 10, 1)], order[max(len(x) // 10, 1):]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            linear = torch.nn.Linear(x.shape[1], y.shape[1])
        config = train_config or TrainConfig(lr=3e-4, weight_decay=1.5e-2, batch_size=32, max_epochs=100, patience=10,
                                             grad_clip=None)
        train_readout(linear, x[train], y[train], x[val], y[val], config=config, random_state=random_state,
                      device=device, desc="BrainSCUBA encoder")
        coef, intercept = linear.weight.detach().cpu().numpy(), linear.bias.detach().cpu().numpy()
    else:
        raise ConfigError("unknown encoder method", expected='"ridge" or "adamw"', found=repr(method))
    coef = coef.reshape(y.shape[1], x.shape[1]).astype(np.float32)
    return LinearEncoder(coef, intercept.reshape(-1).astype(np.float32), voxels.reset_index(drop=True), model_id,
                         method)
