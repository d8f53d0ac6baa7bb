"""The dask cluster a pipeline runs on: a local one, SLURM jobs, or an existing scheduler that must answer fast.

Imports only dask (not torch), so that a wrong ``--scheduler`` fails within seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from braincode.errors import ConfigError

#: Seconds to wait for an external dask scheduler to answer.
CONNECT_TIMEOUT = 5


def _slurm_cluster(jobs: int):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ConfigError(
            "--scheduler slurm needs dask-jobqueue",
            expected="the package dask-jobqueue",
            found="not installed",
            fix="pip install 'braincode[slurm]'",
        ) from exc
    cluster = SLURMCluster()
    cluster.scale(jobs=jobs)
    return cluster


@contextmanager
def cluster_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator:
    """A dask client for the ``with`` block, on a cluster that is closed after it when it was started here.

    Parameters
    ----------
    scheduler : str, optional
        ``tcp://host:port`` of a running scheduler, ``"slurm"`` for ``n_workers`` SLURM jobs (dask-jobqueue), or
        ``None`` for a local cluster of ``n_workers`` single-threaded worker processes.
    n_workers : int
        Workers of the local cluster, or SLURM jobs.

    Raises
    ------
    ConfigError
        When the scheduler does not answer within :data:`CONNECT_TIMEOUT` seconds.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    elif scheduler == "slurm":
        cluster = _slurm_cluster(n_workers)
    else:
        cluster = None
    try:
        client = Client(cluster if cluster is not None else scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise ConfigError("cannot reach the dask scheduler", expected="a running scheduler at the address given",
                          found=f"{scheduler}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          fix="start it (`dask scheduler`), check --scheduler, or leave it out for a local cluster",
                          ) from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
