"""``braincode run CONFIG``: a pipeline config (YAML) for every subject, resumably, on dask.distributed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """Run the pipeline of ``args.config``; prints one line per finished step."""
    if not args.verbose:  # the steps' own progress bars would interleave: one line per finished step instead
        os.environ["BRAINCODE_PROGRESS"] = "0"
    from braincode.pipeline.cluster import cluster_client
    from braincode.pipeline.config import load_config

    config = load_config(args.config)  # bad values and an unreachable scheduler fail before torch is imported
    with cluster_client(args.scheduler, min(args.workers, len(config.subjects))) as client:
        from braincode.pipeline.runner import run_pipeline

        results = run_pipeline(config, client=client, echo=print)
    ran = sum(ran for steps in results.values() for ran in steps.values())
    total = sum(len(steps) for steps in results.values())
    print(f"{config.name}: {ran} of {total} steps ran ({total - ran} up to date); outputs in {config.output}")
    return 0


def register(subparsers) -> None:
    """Add ``run`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("run", help="run a pipeline config (YAML) for every subject, resumably, on dask")
    p.add_argument("config", type=Path)
    p.add_argument("--scheduler", help="tcp://host:port of a running dask scheduler, or slurm (dask-jobqueue)")
    p.add_argument("--workers", type=int, default=2, help="workers of the local cluster, or SLURM jobs")
    p.set_defaults(func=run)
