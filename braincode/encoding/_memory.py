"""Device resources for the ridge solvers: how many voxels fit in one batch, how many threads LAPACK should use."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import torch
from threadpoolctl import threadpool_limits

from braincode.errors import ConfigError

logger = logging.getLogger(__name__)

#: Share of the free memory that one solver call may use for its batch work.
MEMORY_SHARE = 0.5
#: Voxel batches beyond this size no longer speed up the matmuls but cost memory.
MAX_VOXEL_BATCH = 16384
#: ... nor beyond this much batch memory (it bounds the peak memory of a fit: inputs, decompositions, one batch).
MAX_BATCH_BYTES = 2**30
#: Seconds over which :func:`idle_cores` measures what other processes use.
IDLE_SAMPLE_S = 0.2

_THREADS_LOCK = threading.Lock()


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
        Stop at :data:`MAX_VOXEL_BATCH` voxels and :data:`MAX_BATCH_BYTES` (when nothing per batch is worth
        amortising over more voxels).

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
    if cap:
        budget = min(budget, MAX_BATCH_BYTES)
    batch = int(min(n_voxels, MAX_VOXEL_BATCH if cap else n_voxels, budget // bytes_per_voxel))
    logger.debug("voxel batch %d (%.0f MiB per batch) on %s", batch, batch * bytes_per_voxel / 2**20, device)
    return max(batch, 1)


def idle_cores(device: torch.device) -> int:
    """Threads worth giving LAPACK now: torch's thread count, less the cores that other processes keep busy.

    OpenMP threads that share a core with another busy process wait for each other: on 2 cores with other jobs
    running, ``eigh`` of a 2,000 x 2,000 matrix took 5.5 s on 1 thread and 20 s on 2 (on the idle machine, 2
    threads are 1.8x faster than 1). Measured over :data:`IDLE_SAMPLE_S` seconds while this process waits.

    Examples
    --------
    >>> 1 <= idle_cores(torch.device("cpu")) <= torch.get_num_threads()
    True
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        return threads
    busy = psutil.cpu_percent(interval=IDLE_SAMPLE_S) / 100 * (psutil.cpu_count() or 1)
    free = max(1, min(threads, int((psutil.cpu_count() or 1) - busy + 0.5)))
    logger.debug("LAPACK threads: %d of %d (%.1f cores busy elsewhere)", free, threads, busy)
    return free


@contextmanager
def cpu_threads(n: int, device: torch.device) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads and ``n`` BLAS threads for SciPy's LAPACK (process-wide, so
    concurrent callers take turns), then restore."""
    if device.type != "cpu" or n == torch.get_num_threads():
        yield
        return
    with _THREADS_LOCK, threadpool_limits(n, user_api="blas"):
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)
