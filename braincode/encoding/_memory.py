"""Device choice and memory budgets for the ridge solvers: how many voxels fit in one batch."""

from __future__ import annotations

import logging

import psutil
import torch

from braincode.errors import ConfigError

logger = logging.getLogger(__name__)

#: Share of the free memory that one solver call may use for its batch work.
MEMORY_SHARE = 0.5
#: Voxel batches beyond this size no longer speed up the matmuls but cost memory.
MAX_VOXEL_BATCH = 16384


def free_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device`` (GPU: free device memory; CPU: available RAM)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def voxel_batch_size(
    n_voxels: int,
    bytes_per_voxel: int,
    fixed_bytes: int,
    device: torch.device,
    requested: int | None = None,
    cap: bool = True,
) -> int:
    """Largest voxel batch whose work fits in :data:`MEMORY_SHARE` of the free memory on ``device``.

    Parameters
    ----------
    n_voxels : int
        Total number of voxels (targets).
    bytes_per_voxel : int
        Memory that one more voxel in the batch costs.
    fixed_bytes : int
        Memory needed whatever the batch size (design matrices, decompositions).
    device : torch.device
        Where the batch work runs.
    requested : int, optional
        A batch size chosen by the user; used as given (capped at ``n_voxels``).
    cap : bool
        Stop at :data:`MAX_VOXEL_BATCH` (when nothing per batch is worth amortising over more voxels).

    Raises
    ------
    ConfigError
        When not even a batch of one voxel fits.

    Examples
    --------
    >>> voxel_batch_size(10, 1000, 0, torch.device("cpu"))
    10
    """
    if requested is not None:
        if int(requested) < 1:
            raise ConfigError(
                "voxel_batch must be positive", expected="an int >= 1 or None", found=str(requested)
            )
        return min(int(requested), n_voxels)
    budget = MEMORY_SHARE * free_memory(device) - fixed_bytes
    if budget < bytes_per_voxel:
        raise ConfigError(
            "not enough memory for even one voxel batch",
            expected=f"about {(fixed_bytes + bytes_per_voxel) / 2**20:.0f} MiB free on {device}",
            found=f"{free_memory(device) / 2**20:.0f} MiB free",
            fix="free memory, use fewer features or samples, or run on another device",
        )
    batch = int(min(n_voxels, MAX_VOXEL_BATCH if cap else n_voxels, budget // bytes_per_voxel))
    logger.debug("voxel batch %d (%.0f MiB per batch) on %s", batch, batch * bytes_per_voxel / 2**20, device)
    return max(batch, 1)
