"""A fitted braincode encoder as one differentiable ``nn.Module``: images -> predicted responses.

``TorchEncoder`` = the feature extractor's own torch model (resizing and normalisation done on tensors) -> the
chosen layers, pooled by :func:`braincode.features.pooling.pool_token_tensor` (what
:func:`braincode.features.pool_tokens` runs) -> a readout (by default
:class:`LinearReadout`: the standardisation and ridge weights of the fitted pipeline). Its gradient with respect
to the image is what BrainDiVE (:mod:`braincode.interpret.dive`) follows. Other readouts (any ``nn.Module`` from
the design vector to voxels) plug in the same way.

Saved with :func:`braincode.persist.save` (readout tensors in ``model.safetensors``; model id, layers, pooling and
the voxel table in ``config.json``; the backbone is rebuilt from its model id). :meth:`TorchEncoder.load` also
turns any saved linear embedding encoder (an object with ``model_id``, ``coef``, ``intercept`` and ``voxels``, such
as BrainSCUBA's from ``braincode caption``) into a TorchEncoder on the pooled embedding.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T

from braincode import persist
from braincode.errors import ConfigError, DataFormatError, NotFittedError
from braincode.features import get_extractor
from braincode.features.design import FeatureSpec
from braincode.features.pooling import pool_token_tensor
from braincode.features.vision import VisionExtractor

#: The file whose presence marks a saved encoder (:func:`braincode.persist.save`'s config).
CONFIG = persist.CONFIG_FILE


class LinearReadout(nn.Module):
    """``y = ((x - mean) / scale) @ weight.T + bias``: a fitted linear encoder as a torch module.

    Parameters
    ----------
    weight : array (n_voxels, n_features)
    bias : array (n_voxels,)
    mean, scale : array (n_features,), optional
        Feature standardisation applied first (a fitted ``StandardScaler``); identity when omitted.
    l2_normalize : bool
        Scale each feature vector to unit length before anything else (BrainSCUBA's encoder).

    Examples
    --------
    >>> r = LinearReadout(np.eye(2), np.zeros(2), mean=np.ones(2), scale=2 * np.ones(2))
    >>> r(torch.tensor([[3.0, 5.0]])).tolist()
    [[1.0, 2.0]]
    """

    def __init__(self, weight, bias, *, mean=None, scale=None, l2_normalize: bool = False) -> None:
        super().__init__()
        self.l2_normalize = bool(l2_normalize)
        weight = torch.as_tensor(np.asarray(weight, dtype=np.float32))
        bias = torch.as_tensor(np.asarray(bias, dtype=np.float32)).reshape(-1)
        n_vox, n_feat = weight.shape
        mean = torch.zeros(n_feat) if mean is None else torch.as_tensor(np.asarray(mean, dtype=np.float32))
        scale = torch.ones(n_feat) if scale is None else torch.as_tensor(np.asarray(scale, dtype=np.float32))
        if bias.shape != (n_vox,) or mean.shape != (n_feat,) or scale.shape != (n_feat,):
            raise DataFormatError(
                "readout tensors disagree in shape",
                expected=f"weight (V, P), bias (V,), mean and scale (P,) with V={n_vox}, P={n_feat}",
                found=f"bias {tuple(bias.shape)}, mean {tuple(mean.shape)}, scale {tuple(scale.shape)}",
            )
        for name, value in (("weight", weight), ("bias", bias), ("mean", mean), ("scale", scale)):
            self.register_buffer(name, value.contiguous())

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[1])

    @classmethod
    def from_estimator(cls, estimator) -> LinearReadout:
        """From a fitted ``RidgeEncoder`` (or any estimator with ``coef_`` (V, P) and ``intercept_``), optionally
        behind a fitted ``StandardScaler`` in a scikit-learn ``Pipeline`` (as :func:`braincode.encoding.analysis.make_encoder`).
        """
        steps = [s for _, s in estimator.steps] if hasattr(estimator, "steps") else [estimator]
        *pre, last = steps
        if not hasattr(last, "coef_"):
            raise NotFittedError(
                f"{type(last).__name__} has no coef_",
                expected="a fitted linear estimator (RidgeEncoder, sklearn Ridge, ...)",
                fix="call fit(X, Y) first",
            )
        if len(pre) > 1 or (pre and not hasattr(pre[0], "mean_")):
            raise ConfigError(
                "only a StandardScaler may come before the linear estimator",
                found=" -> ".join(type(s).__name__ for s in steps),
            )
        coef = np.atleast_2d(np.asarray(last.coef_))
        intercept = np.broadcast_to(np.asarray(getattr(last, "intercept_", 0.0), np.float32), coef.shape[:1]).copy()
        if not pre:
            return cls(coef, intercept)
        scaler = pre[0]
        scale = np.ones_like(scaler.mean_) if scaler.scale_ is None else scaler.scale_
        mean = scaler.mean_ if scaler.with_mean else np.zeros_like(scaler.mean_)
        return cls(coef, intercept, mean=mean, scale=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.l2_normalize:
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return ((x - self.mean) / self.scale) @ self.weight.T + self.bias


def _image_geometry(transform) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Input side and normalisation of a torchvision image transform (Resize/CenterCrop + Normalize)."""
    steps = transform.transforms if isinstance(transform, T.Compose) else [transform]
    norm = next((s for s in steps if isinstance(s, T.Normalize)), None)
    crops = [s.size for s in steps if isinstance(s, (T.CenterCrop, T.Resize))]
    if norm is None or not crops:
        raise ConfigError(
            "cannot read the image size and normalisation from the extractor's transform",
            expected="a torchvision Compose with Resize or CenterCrop and Normalize",
            found=repr(transform),
        )
    size = crops[-1]
    side = int(size if isinstance(size, int) else size[0])
    return side, tuple(float(m) for m in norm.mean), tuple(float(s) for s in norm.std)


class TorchEncoder(nn.Module):
    """Images (n, 3, H, W) in [0, 1] -> predicted responses (n, n_voxels), differentiable end to end.

    Parameters
    ----------
    extractor : VisionExtractor
        From :func:`braincode.features.get_extractor`; its model, preprocessing and token layout are used.
    config : FeatureSpec
        Layers and pooling that made the design matrix the readout was fitted on.
    readout : nn.Module
        Design vector (n, n_features) -> responses (n, n_voxels), e.g. :class:`LinearReadout`.
    voxels : DataFrame, optional
        The voxel table (one row per output column), kept for ROI lookups and saved with the encoder.

    Examples
    --------
    >>> ext = get_extractor("open_clip:tiny-vit@random", device="cpu")
    >>> enc = TorchEncoder(ext, FeatureSpec(ext.model_id), LinearReadout(np.ones((3, 64)), np.zeros(3)))
    >>> enc(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 3])
    """

    def __init__(self, extractor: VisionExtractor, config: FeatureSpec, readout: nn.Module, *,
                 voxels: pd.DataFrame | None = None) -> None:
        super().__init__()
        if getattr(extractor, "kind", None) != "vision":
            raise ConfigError(
                f"{extractor.model_id} is not an image model; a differentiable encoder needs image features",
                fix="fit the encoder on image features only (no --text-features)",
            )
        self.config, self.voxels = config, voxels
        self.extractor = extractor
        self.backbone = extractor.model.requires_grad_(False)
        self.readout = readout.to(extractor.device)
        self.side, mean, std = _image_geometry(extractor.transform)
        self.register_buffer("pixel_mean", torch.tensor(mean, device=extractor.device).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std, device=extractor.device).view(1, 3, 1, 1))
        unknown = [name for name in config.layers if name not in extractor.layers]
        if unknown:
            raise ConfigError(f"{extractor.model_id} has no layer(s) {unknown}", expected=str(extractor.layers))
        n_out = self.design(torch.zeros(1, 3, self.side, self.side, device=self.device)).shape[1]
        n_in = getattr(readout, "n_features", n_out)
        if n_in != n_out:
            raise DataFormatError(
                "the readout does not fit the features",
                expected=f"a readout of {n_out} features ({config.model_id} {', '.join(config.layers)}, "
                         f"pool {config.pool})",
                found=f"{n_in} features",
                fix="build the encoder with the FeatureSpec the readout was fitted with",
            )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pixel_mean.dtype

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize (bicubic, antialiased, shorter side then centre crop) and normalise, as the extractor does."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataFormatError("images must be a batch of RGB tensors", expected="(n, 3, H, W) in [0, 1]",
                                  found=str(tuple(images.shape)))
        h, w = images.shape[-2:]
        if (h, w) != (self.side, self.side):
            scale = self.side / min(h, w)
            size = (max(self.side, round(h * scale)), max(self.side, round(w * scale)))
            images = F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)
            top, left = (size[0] - self.side) // 2, (size[1] - self.side) // 2
            images = images[:, :, top : top + self.side, left : left + self.side]
        return (images - self.pixel_mean) / self.pixel_std

    def design(self, images: torch.Tensor) -> torch.Tensor:
        """The design vector (n, n_features) of ``images``, with gradients."""
        x = self.preprocess(images.to(self.device, torch.float32))
        found = self.extractor.run_layers(x, list(self.config.layers))
        parts = [found[name].reshape(len(x), -1) if name == "pooled" else
                 pool_token_tensor(found[name], num_prefix_tokens=self.extractor.num_prefix_tokens,
                                   grid=self.extractor.grid, mode=self.config.pool, out_grid=self.config.out_grid)
                 for name in self.config.layers]
        return torch.cat([p.float() for p in parts], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.readout(self.design(images))

    @classmethod
    def from_estimator(cls, config: FeatureSpec, estimator, *, voxels: pd.DataFrame | None = None,
                       device: str = "auto") -> TorchEncoder:
        """Build from a fitted linear estimator or ``StandardScaler -> RidgeEncoder`` pipeline (see
        :meth:`LinearReadout.from_estimator`) and the config its design matrix was made with."""
        extractor = get_extractor(config.model_id, layers=list(config.layers), device=device)
        return cls(extractor, config, LinearReadout.from_estimator(estimator), voxels=voxels)

    def _get_state(self) -> tuple[dict, dict]:
        if not isinstance(self.readout, LinearReadout):
            raise ConfigError("only LinearReadout encoders can be saved this way", found=type(self.readout).__name__)
        voxels = None if self.voxels is None else self.voxels.to_dict(orient="list")
        config = {"feature_spec": asdict(self.config), "l2_normalize": self.readout.l2_normalize, "voxels": voxels}
        return config, dict(self.readout.state_dict())

    @classmethod
    def _from_state(cls, config: dict, tensors: dict, device: torch.device) -> TorchEncoder:
        spec = config["feature_spec"]
        spec = FeatureSpec(spec["model_id"], tuple(spec["layers"]), spec["pool"], int(spec["out_grid"]))
        readout = LinearReadout(tensors["weight"], tensors["bias"], mean=tensors["mean"], scale=tensors["scale"],
                                l2_normalize=config["l2_normalize"])
        voxels = None if config["voxels"] is None else pd.DataFrame(config["voxels"])
        extractor = get_extractor(spec.model_id, layers=list(spec.layers), device=str(device))
        return cls(extractor, spec, readout, voxels=voxels)

    def save(self, folder: str | Path) -> Path:
        """Write the encoder with :func:`braincode.persist.save` (read back by :meth:`load` or ``persist.load``)."""
        return persist.save(self, folder)

    @classmethod
    def load(cls, folder: str | Path, *, device: str = "auto") -> TorchEncoder:
        """Load a saved encoder (the backbone rebuilt from its model id, offline).

        A saved linear embedding encoder (``model_id``, ``coef`` on L2-normalised pooled embeddings,
        ``intercept``, ``voxels``: BrainSCUBA's) becomes a TorchEncoder on the ``"pooled"`` layer.
        """
        model = persist.load(folder, device=device)
        if isinstance(model, cls):
            return model
        if all(hasattr(model, a) for a in ("model_id", "coef", "intercept", "voxels")):
            readout = LinearReadout(model.coef, model.intercept, l2_normalize=True)
            extractor = get_extractor(model.model_id, layers=["pooled"], device=device)
            return cls(extractor, FeatureSpec(model.model_id, ("pooled",)), readout, voxels=model.voxels)
        raise DataFormatError("the saved model is not an image encoder", path=Path(folder),
                              expected="a TorchEncoder or a linear embedding encoder", found=type(model).__name__)
