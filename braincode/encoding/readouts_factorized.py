"""The spatial x feature factorized readout: a softmax map over the patch grid times per-voxel feature weights.

``y[b, v] = sum_p softmax(logits[v])[p] * <x[b, p], w[v]> + bias[v]`` (Klindt et al. 2017 style, as compared by
Saha, Chadha & Khosla 2024), with a Laplacian smoothness penalty on the map logits and an L1 penalty on the
feature weights, computed ``voxel_chunk`` voxels at a time (each chunk recomputed in the backward pass).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from braincode.encoding.readouts_base import TokenReadout
from braincode.encoding.readouts_routing import TokenStandardizer, maybe_checkpoint, voxel_chunks
from braincode.errors import DataFormatError


class FactorizedModule(nn.Module):
    """Per-voxel softmax spatial map over the patch grid times per-voxel feature weights.

    Parameters
    ----------
    d_in : int
        Feature size of the tokens.
    grid : (int, int)
        Patch grid.
    num_prefix_tokens : int
        Leading non-patch tokens to drop.
    n_voxels : int
        Number of outputs.
    smoothness : float
        Weight of the mean squared Laplacian of each voxel's map logits over the grid.
    sparsity : float
        Weight of the mean absolute feature weight.
    voxel_chunk : int
        Voxels computed at once.
    """

    def __init__(self, d_in: int, grid: tuple[int, int], num_prefix_tokens: int, n_voxels: int, *,
                 smoothness: float = 0.0, sparsity: float = 0.0, voxel_chunk: int = 1024) -> None:
        super().__init__()
        self.grid, self.smoothness, self.sparsity, self.voxel_chunk = tuple(grid), smoothness, sparsity, voxel_chunk
        self.standardize = TokenStandardizer(d_in, num_prefix_tokens)
        self.spatial_logits = nn.Parameter(torch.zeros(n_voxels, grid[0] * grid[1]))
        self.feature_weight = nn.Parameter(torch.randn(n_voxels, d_in) / math.sqrt(d_in))
        self.bias = nn.Parameter(torch.zeros(n_voxels))
        laplace = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("laplace", laplace[None, None], persistent=False)

    def spatial_maps(self) -> torch.Tensor:
        """The voxels' spatial maps ``(n_voxels, gh, gw)``, each summing to 1."""
        return self.spatial_logits.softmax(-1).view(-1, *self.grid)

    def _chunk(self, rows: slice, x: torch.Tensor) -> torch.Tensor:
        per_token = x @ self.feature_weight[rows].T  # (B, P, chunk)
        return torch.einsum("bpv,vp->bv", per_token, self.spatial_logits[rows].softmax(-1)) + self.bias[rows]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.standardize(tokens)
        if x.shape[1] != self.spatial_logits.shape[1]:
            raise DataFormatError("the tokens do not match the readout's patch grid",
                                  expected=f"{self.spatial_logits.shape[1]} patch tokens (grid {self.grid})",
                                  found=f"{x.shape[1]}")
        parts = [maybe_checkpoint(lambda t, r=rows: self._chunk(r, t), x)
                 for rows in voxel_chunks(len(self.bias), self.voxel_chunk)]
        return torch.cat(parts, dim=1)

    def penalty(self) -> torch.Tensor:
        """Smoothness (Laplacian of the map logits) plus sparsity (L1 of the feature weights)."""
        lap = F.conv2d(self.spatial_logits.view(-1, 1, *self.grid), self.laplace, padding=1)
        return self.smoothness * lap.pow(2).sum((1, 2, 3)).mean() + self.sparsity * self.feature_weight.abs().mean()


class FactorizedReadout(TokenReadout):
    """Spatial x feature factorized readout as a scikit-learn estimator.

    Parameters
    ----------
    smoothness : float
        Weight of the Laplacian penalty on each voxel's spatial-map logits.
    sparsity : float
        Weight of the L1 penalty on the feature weights.
    num_prefix_tokens : int
        Leading non-patch tokens of ``X`` (class token, registers) to drop.
    grid : (int, int) or None
        Patch grid; ``None``: square.
    lr, weight_decay, batch_size, max_epochs, patience, grad_clip
        Training (:class:`~braincode.encoding.training.TrainConfig`). The defaults reach convergence on the
        synthetic benchmark (``bench/readouts.py``); ``stopped_improving_`` says when a run did not.
    validation_fraction : float
        Share of the training rows held out for early stopping when no validation set is passed.
    voxel_chunk : int
        Voxels computed at once.
    random_state : int
        Seed of initialisation, validation split and shuffling.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(80, 16, 4)).astype(np.float32)       # 4x4 patches, no prefix token
    >>> Y = X[:, 5, :1] - X[:, 5, 1:2]                            # one voxel looking at patch 5
    >>> model = FactorizedReadout(device="cpu").fit(X, Y)
    >>> int(model.spatial_maps_.reshape(1, -1).argmax()), model.stopped_improving_
    (5, False)
    """

    def __init__(self, *, smoothness: float = 1e-3, sparsity: float = 1e-4, num_prefix_tokens: int = 0,
                 grid: tuple[int, int] | None = None, lr: float = 5e-2, weight_decay: float = 0.0,
                 batch_size: int = 32, max_epochs: int = 200, patience: int = 10, grad_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, voxel_chunk: int = 1024, random_state: int = 0,
                 device: str = "auto") -> None:
        self.smoothness, self.sparsity, self.num_prefix_tokens, self.grid = smoothness, sparsity, num_prefix_tokens, grid
        self.lr, self.weight_decay, self.batch_size, self.max_epochs = lr, weight_decay, batch_size, max_epochs
        self.patience, self.grad_clip, self.validation_fraction = patience, grad_clip, validation_fraction
        self.voxel_chunk, self.random_state, self.device = voxel_chunk, random_state, device

    def _build_module(self, d_in: int, n_voxels: int, extra: dict[str, Any],
                      tensors: dict[str, torch.Tensor]) -> FactorizedModule:
        return FactorizedModule(d_in, tuple(extra["grid"]), self.num_prefix_tokens, n_voxels,
                                smoothness=self.smoothness, sparsity=self.sparsity, voxel_chunk=self.voxel_chunk)

    @property
    def spatial_maps_(self) -> np.ndarray:
        """Each voxel's spatial map over the patch grid, ``(n_voxels, gh, gw)``, summing to 1."""
        self._check_fitted()
        with torch.no_grad():
            return self.module_.spatial_maps().cpu().numpy()
