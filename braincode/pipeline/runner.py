"""The resumable per-subject runner, on dask.distributed.

Each step of a subject writes into a temporary folder beside its final one and renames it on success, with a
``manifest.json`` (config hash, hashes of its inputs, package version, timing). A rerun skips every step whose
manifest matches the current config and inputs, and removes temporary folders that a killed run left behind, so a
run killed at any point (even by SIGKILL) resumes and ends with the same outputs as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import braincode
from braincode.errors import ConfigError
from braincode.pipeline.config import PipelineConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StepContext:
    """What a step sees: the config, the subject, and the final folders of the steps before it."""

    config: PipelineConfig
    subject: str
    subject_dir: Path

    def step_dir(self, step: str) -> Path:
        """Final folder of ``step`` for this subject (only read it from a step that runs after ``step``)."""
        return self.subject_dir / step


#: A step writes its outputs into the folder it is given and returns nothing.
StepFn = Callable[[StepContext, Path], None]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except the manifest, keyed by relative path."""
    return {
        str(p.relative_to(folder)): file_digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def _expected_manifest(ctx: StepContext, step: str, upstream: list[str]) -> dict:
    inputs = {}
    for name in upstream:
        manifest = json.loads((ctx.step_dir(name) / MANIFEST).read_text())
        inputs[name] = hashlib.sha256(json.dumps(manifest["outputs"], sort_keys=True).encode()).hexdigest()
    return {
        "step": step,
        "subject": ctx.subject,
        "config": ctx.config.digest(),
        "inputs": inputs,
        "version": braincode.__version__,
    }


def _matches(final: Path, expected: dict) -> bool:
    try:
        found = json.loads((final / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all(found.get(k) == v for k, v in expected.items())


def clean_temporaries(subject_dir: Path) -> int:
    """Remove temporary step folders a killed run left in ``subject_dir``; returns how many were removed."""
    stale = [p for p in subject_dir.glob(f"{TMP_PREFIX}*") if p.is_dir()] if subject_dir.exists() else []
    for p in stale:
        shutil.rmtree(p)
    return len(stale)


def run_step(ctx: StepContext, step: str, fn: StepFn, upstream: list[str]) -> bool:
    """Run one step unless its manifest already matches; returns ``True`` when it ran."""
    final = ctx.step_dir(step)
    expected = _expected_manifest(ctx, step, upstream)
    if _matches(final, expected):
        log.info("%s %s: up to date, skipped", ctx.subject, step)
        return False
    tmp = ctx.subject_dir / f"{TMP_PREFIX}{step}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    start, started = time.perf_counter(), time.time()
    try:
        fn(ctx, tmp)
        timing = {
            "started": started,
            "finished": time.time(),
            "seconds": round(time.perf_counter() - start, 3),
            "pid": os.getpid(),
        }
        manifest = {**expected, **timing, "outputs": output_digests(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("%s %s: done in %.1f s", ctx.subject, step, time.perf_counter() - start)
    return True


def run_subject(config: PipelineConfig, subject: str, steps: Sequence[str] | None = None) -> dict[str, bool]:
    """Run the configured steps (or those of ``steps``) for one subject, in order.

    Returns which steps ran (``False`` = skipped because its manifest matched). Every configured step before a
    step is its upstream, whether it runs in this call or ran before.
    """
    from braincode.pipeline.tasks import STEP_FUNCTIONS

    ctx = StepContext(config, subject, config.output / subject)
    ctx.subject_dir.mkdir(parents=True, exist_ok=True)
    clean_temporaries(ctx.subject_dir)
    wanted = config.steps if steps is None else steps
    ran = {}
    for i, step in enumerate(config.steps):
        if step in wanted:
            ran[step] = run_step(ctx, step, STEP_FUNCTIONS[step], list(config.steps[:i]))
    return ran


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


def _run_phases(client, config: PipelineConfig) -> list[dict[str, bool]]:
    """Subjects in parallel, with one shared feature extraction between ``validate`` and the later steps.

    Extracting the union of every subject's stimuli in one task computes shared stimuli once and makes each
    subject's features independent of which subject ran first, so results do not depend on scheduling.
    """
    from braincode.pipeline.tasks import extract_shared

    subjects = list(config.subjects)
    results: list[dict[str, bool]] = [{} for _ in subjects]

    def phase(steps: list[str]) -> None:
        if steps:
            futures = client.map(run_subject, [config] * len(subjects), subjects, [steps] * len(subjects), pure=False)
            for res, done in zip(results, client.gather(futures)):
                res.update(done)

    phase([s for s in config.steps if s == "validate"])
    if "extract" in config.steps:
        client.submit(extract_shared, config, pure=False).result()
    phase([s for s in config.steps if s != "validate"])
    return results


def run_pipeline(
    config: PipelineConfig, *, scheduler: str | None = None, n_workers: int = 2
) -> dict[str, dict]:
    """Run every subject of ``config`` on dask.distributed, subjects in parallel.

    Parameters
    ----------
    config : PipelineConfig
        The validated configuration.
    scheduler : str, optional
        Address of an existing scheduler (``tcp://host:port``), or ``"slurm"`` to submit ``n_workers`` SLURM jobs
        with dask-jobqueue (queue, memory and account from dask's ``jobqueue.slurm`` configuration); by default a
        ``LocalCluster`` of ``n_workers`` single-threaded worker processes is started and closed.
    n_workers : int
        Workers of the local cluster, or SLURM jobs.

    Returns
    -------
    dict
        ``{subject: {step: ran}}``.
    """
    from dask.distributed import Client, LocalCluster

    config.output.mkdir(parents=True, exist_ok=True)
    workers = min(n_workers, len(config.subjects))
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    elif scheduler == "slurm":
        cluster = _slurm_cluster(workers)
    else:
        cluster = None
    client = Client(cluster if cluster is not None else scheduler)
    try:
        results = _run_phases(client, config)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return dict(zip(config.subjects, results))
