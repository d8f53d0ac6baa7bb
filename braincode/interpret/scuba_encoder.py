"""BrainSCUBA's encoder: a voxel-wise linear map on L2-normalised CLIP image embeddings.

The published recipe (:func:`fit_encoder_on_images`, as the authors' ``training_ICLR.py``): ``Linear(D ->
n_voxels)`` on ``normalise(CLIP(image))``, MSE loss, AdamW (lr 3e-4, weight decay 1.5e-2), batch 32, 100 epochs,
the learning rate decayed per epoch as ``lr * 0.5 ** (epoch / epochs)``, every batch augmented by one random shift
of up to +-4 pixels (replicate padding) and Gaussian noise (sd 0.05) on the preprocessed images, the last epoch
kept. :func:`fit_encoder` fits on precomputed embeddings (same optimiser and schedule without the image
augmentation, or ridge). Both can hold out part of the training split: the encoder never sees it, its per-voxel
``val_r`` is measured there, and caption evaluation uses it (:mod:`braincode.interpret.evaluation`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from braincode.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Training settings of the published BrainSCUBA encoder.

    Parameters
    ----------
    lr, weight_decay, batch_size, epochs : AdamW settings (3e-4, 1.5e-2, 32, 100 in the paper)
    lr_decay : float
        Learning rate at epoch ``e`` is ``lr * lr_decay ** (e / epochs)`` (0.5: halved by the last epoch).
    shift : int
        Largest random shift in pixels (+-4), one draw per batch, replicate padding.
    noise : float
        Standard deviation of the Gaussian noise added to the preprocessed images (0.05).
    """

    lr: float = 3e-4
    weight_decay: float = 1.5e-2
    batch_size: int = 32
    epochs: int = 100
    lr_decay: float = 0.5
    shift: int = 4
    noise: float = 0.05


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32).

    Examples
    --------
    >>> unit_rows(np.array([[3.0, 4.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class LinearEncoder:
    """Voxel-wise linear map from L2-normalised embeddings: ``y = normalise(x) @ coef.T + intercept``.

    Saved with :func:`braincode.persist.save` (:meth:`save`, :func:`load_encoder`).

    Attributes
    ----------
    coef : ndarray (n_voxels, D)
    intercept : ndarray (n_voxels,)
    voxels : DataFrame
    model_id : str
        The embedding model, e.g. ``open_clip:ViT-B-32@openai``.
    method : {"published", "adamw", "ridge"}
        ``published``: AdamW on augmented images; ``adamw``: the same optimiser on fixed embeddings.
    train_ids, heldout_ids : tuple of str
        Stimuli the encoder was fitted on, and those held out from it.
    val_r : ndarray (n_voxels,) or None
        Pearson r per voxel on the held-out stimuli (a validation score).
    """

    coef: np.ndarray
    intercept: np.ndarray
    voxels: pd.DataFrame
    model_id: str = ""
    method: str = "adamw"
    train_ids: tuple[str, ...] = ()
    heldout_ids: tuple[str, ...] = ()
    val_r: np.ndarray | None = field(default=None, compare=False)

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted responses (n, n_voxels) of raw embeddings (n, D) (normalised here)."""
        return unit_rows(embeddings) @ self.coef.T + self.intercept

    def top_voxels(self, n: int) -> np.ndarray:
        """Indices of the ``n`` voxels with the highest held-out ``val_r``, best first (the papers use 5,000).

        Examples
        --------
        >>> enc = LinearEncoder(np.zeros((3, 2)), np.zeros(3), pd.DataFrame({"v": [0, 1, 2]}),
        ...                     val_r=np.array([0.1, 0.5, 0.3]))
        >>> enc.top_voxels(2).tolist()
        [1, 2]
        """
        if self.val_r is None:
            raise ConfigError("the encoder has no held-out scores to rank voxels by",
                              fix="fit it with holdout > 0 (caption --holdout)")
        return np.argsort(-np.asarray(self.val_r), kind="stable")[: int(n)]

    def _get_state(self) -> tuple[dict, dict]:
        config = {"model_id": self.model_id, "method": self.method, "input": "L2-normalised embeddings",
                  "voxels": json.loads(self.voxels.to_json(orient="split", index=False)),
                  "train_ids": list(self.train_ids), "heldout_ids": list(self.heldout_ids)}
        tensors = {"coef": np.ascontiguousarray(self.coef, np.float32),
                   "intercept": np.ascontiguousarray(self.intercept, np.float32)}
        if self.val_r is not None:
            tensors["val_r"] = np.ascontiguousarray(self.val_r, np.float32)
        return config, tensors

    @classmethod
    def _from_state(cls, config: dict, tensors: dict, device) -> LinearEncoder:
        voxels = pd.read_json(StringIO(json.dumps(config["voxels"])), orient="split", dtype=False)
        voxels = voxels.fillna("") if len(voxels) else voxels
        val_r = tensors["val_r"].numpy() if "val_r" in tensors else None
        return cls(tensors["coef"].numpy(), tensors["intercept"].numpy(), voxels, config["model_id"],
                   config["method"], tuple(config["train_ids"]), tuple(config["heldout_ids"]), val_r)

    def save(self, folder: str | Path) -> Path:
        """Write the encoder into ``folder`` (``config.json`` + ``model.safetensors``)."""
        from braincode import persist

        return persist.save(self, folder)


def load_encoder(folder: str | Path) -> LinearEncoder:
    """Read an encoder written by :meth:`LinearEncoder.save`.

    Examples
    --------
    >>> import tempfile
    >>> enc = LinearEncoder(np.eye(2, dtype=np.float32), np.zeros(2, np.float32), pd.DataFrame({"roi": ["a", ""]}))
    >>> load_encoder(enc.save(tempfile.mkdtemp())).voxels["roi"].tolist()
    ['a', '']
    """
    from braincode import persist

    encoder = persist.load(folder, device="cpu")
    if not isinstance(encoder, LinearEncoder):
        raise DataFormatError("the folder holds another kind of model", path=folder, expected="a BrainSCUBA encoder",
                              found=type(encoder).__name__, fix="fit one with `braincode caption --fit FOLDER`")
    return encoder


def holdout_split(n: int, fraction: float, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) index split of ``n`` stimuli; ``fraction`` 0 holds out nothing.

    Examples
    --------
    >>> train, held = holdout_split(10, 0.2)
    >>> len(train), len(held), sorted(np.r_[train, held].tolist()) == list(range(10))
    (8, 2, True)
    """
    if not 0 <= fraction < 1:
        raise ConfigError("the held-out fraction must be in [0, 1)", found=repr(fraction), fix="e.g. 0.1")
    order = np.random.default_rng(random_state).permutation(n)
    n_held = round(n * fraction)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def _shift(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate (n, C, H, W) by ``dx`` rows and ``dy`` columns, filling with the edge values."""
    h, w = images.shape[-2:]
    cropped = images[:, :, max(0, dx):min(h, h + dx), max(0, dy):min(w, w + dy)]
    pad = (max(0, -dy), max(0, dy), max(0, -dx), max(0, dx))
    return torch.nn.functional.pad(cropped, pad, mode="replicate")


def _train(features: Callable[[np.ndarray, torch.Generator], torch.Tensor], y: np.ndarray, dim: int,
           recipe: Recipe, random_state: int, device: torch.device, desc: str) -> torch.nn.Linear:
    """The published loop: seeded shuffles, AdamW, per-epoch exponential lr decay, MSE, last epoch kept."""
    from braincode.progress import progress

    gen = torch.Generator().manual_seed(random_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        linear = torch.nn.Linear(dim, y.shape[1]).to(device)
    optim = torch.optim.AdamW(linear.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    target = torch.from_numpy(np.asarray(y, np.float32))
    for epoch in progress(range(1, recipe.epochs + 1), desc=desc):
        for group in optim.param_groups:
            group["lr"] = recipe.lr * recipe.lr_decay ** (epoch / recipe.epochs)
        order = torch.randperm(len(y), generator=gen).numpy()
        for start in range(0, len(y), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            loss = torch.nn.functional.mse_loss(linear(features(idx, gen)), target[idx].to(device))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
    return linear.eval()


def _check(x_rows: int, y: np.ndarray, voxels: pd.DataFrame, ids: Sequence[str] | None) -> None:
    if y.ndim != 2 or x_rows != len(y) or y.shape[1] != len(voxels) or (ids is not None and len(ids) != len(y)):
        raise DataFormatError("stimuli, responses and voxel table disagree",
                              expected="n stimuli, (n, n_voxels) responses and n_voxels voxel rows",
                              found=f"{x_rows} stimuli, {y.shape} responses and {len(voxels)} rows")


def _finish(coef, intercept, voxels, model_id, method, ids, train, held, predict) -> LinearEncoder:
    from braincode.encoding.metrics import pearson_r

    encoder = LinearEncoder(np.asarray(coef, np.float32).reshape(len(voxels), -1),
                            np.asarray(intercept, np.float32).reshape(-1), voxels.reset_index(drop=True), model_id,
                            method, tuple(ids[i] for i in train), tuple(ids[i] for i in held))
    if len(held) < 3:
        return encoder
    return replace(encoder, val_r=np.asarray(pearson_r(predict[1], predict[0](encoder)), np.float32))


def fit_encoder(
    embeddings: np.ndarray,
    responses: np.ndarray,
    voxels: pd.DataFrame,
    *,
    method: str = "adamw",
    model_id: str = "",
    ids: Sequence[str] | None = None,
    holdout: float = 0.0,
    recipe: Recipe = Recipe(),
    alphas: Sequence[float] | None = None,
    cv: int = 5,
    random_state: int = 0,
    device: str = "auto",
) -> LinearEncoder:
    """Fit BrainSCUBA's linear encoder on L2-normalised precomputed ``embeddings`` (n, D) -> ``responses``.

    ``method="adamw"``: the published optimiser and schedule (:class:`Recipe`) on fixed embeddings (no image
    augmentation: use :func:`fit_encoder_on_images` for the full published recipe). ``method="ridge"``:
    :class:`braincode.encoding.estimators.RidgeEncoder` with per-voxel alphas chosen by ``cv``-fold CV.
    ``holdout`` (a fraction) of the stimuli is left out of the fit and scored (``val_r``).

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((50, 4))
    >>> y = unit_rows(x) @ np.array([[1.0], [0.0], [0.0], [0.0]])
    >>> enc = fit_encoder(x, y, pd.DataFrame({"v": [0]}), method="ridge", alphas=[1e-6], device="cpu")
    >>> (enc.coef.round(2) + 0.0).tolist()
    [[1.0, 0.0, 0.0, 0.0]]
    """
    from braincode.devices import resolve_device

    x, y = unit_rows(embeddings), np.asarray(responses, dtype=np.float32)
    _check(len(x), y, voxels, ids)
    ids = [str(i) for i in (ids if ids is not None else range(len(x)))]
    train, held = holdout_split(len(x), holdout, random_state)
    if method == "ridge":
        from braincode.encoding.estimators import RidgeEncoder

        kwargs = {"cv": cv, "device": device, **({} if alphas is None else {"alphas": np.asarray(alphas, float)})}
        ridge = RidgeEncoder(**kwargs).fit(x[train], y[train])
        coef, intercept = np.asarray(ridge.coef_), np.asarray(ridge.intercept_)
    elif method == "adamw":
        dev = resolve_device(device)
        xt = torch.from_numpy(x[train]).to(dev)
        linear = _train(lambda idx, _: xt[idx], y[train], x.shape[1], recipe, random_state, dev, "BrainSCUBA encoder")
        coef, intercept = linear.weight.detach().cpu().numpy(), linear.bias.detach().cpu().numpy()
    else:
        raise ConfigError("unknown encoder method", expected='"adamw" or "ridge"', found=repr(method))
    return _finish(coef, intercept, voxels, model_id, method, ids, train, held,
                   (lambda enc: enc.predict(x[held]), y[held]))


def fit_encoder_on_images(
    stimuli,
    responses: np.ndarray,
    voxels: pd.DataFrame,
    model_id: str,
    *,
    holdout: float = 0.1,
    recipe: Recipe = Recipe(),
    random_state: int = 0,
    device: str = "auto",
) -> LinearEncoder:
    """The published BrainSCUBA encoder: CLIP in the loop on shifted, noised images, AdamW, 100 epochs.

    Parameters
    ----------
    stimuli : Stimuli
        Training images (``responses`` rows in the same order).
    model_id : str
        An open_clip image tower, e.g. ``open_clip:ViT-B-32@openai`` (the paper's).
    holdout : float
        Fraction of the stimuli the encoder never sees; its ``val_r`` is measured on them.

    Examples
    --------
    >>> enc = fit_encoder_on_images(train.stimuli, train.responses.data, voxels,
    ...                             "open_clip:ViT-B-32@openai")  # doctest: +SKIP
    """
    from braincode.devices import resolve_device
    from braincode.features import get_extractor
    from braincode.features.vision import load_images

    y = np.asarray(responses, dtype=np.float32)
    _check(len(stimuli.ids), y, voxels, None)
    dev = resolve_device(device)
    extractor = get_extractor(model_id, layers=["pooled"], device=str(dev))
    images = load_images(stimuli, range(len(stimuli.ids)), extractor.transform).half()
    train, held = holdout_split(len(y), holdout, random_state)

    def embed(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.nn.functional.normalize(extractor.run(x.to(dev, torch.float32))[0].float(), dim=-1)

    def augmented(idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        dx, dy = torch.randint(-recipe.shift, recipe.shift + 1, (2,), generator=gen).tolist()
        x = _shift(images[train[idx]].float(), dx, dy)
        return embed(x + recipe.noise * torch.randn(x.shape, generator=gen))

    dim = embed(images[:1]).shape[1]
    linear = _train(augmented, y[train], dim, recipe, random_state, dev, "BrainSCUBA encoder (published)")
    coef, intercept = linear.weight.detach().cpu().numpy(), linear.bias.detach().cpu().numpy()

    def predict(encoder: LinearEncoder) -> np.ndarray:
        return np.concatenate([encoder.predict(embed(images[held[s:s + 64]]).cpu().numpy())
                               for s in range(0, len(held), 64)]) if len(held) else np.zeros((0, len(voxels)))

    return _finish(coef, intercept, voxels, model_id, "published", list(stimuli.ids), train, held,
                   (predict, y[held]))
