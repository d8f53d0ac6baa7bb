"""The resumable per-subject runner, on dask.distributed.

Each step of a subject writes into a temporary folder beside its final one and renames it on success, with a
``manifest.json`` (config hash, hashes of its inputs, package version, timing). A rerun skips every step whose
manifest matches the current config and inputs, and removes temporary folders that a killed run left behind, so a
run killed at any point (even by SIGKILL) resumes and ends with the same outputs as an uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import braincode
from braincode.atomic import honour_umask
from braincode.pipeline.cluster import cluster_client
from braincode.pipeline.config import PipelineConfig
from braincode.pipeline.context import Step, StepContext
from braincode.pipeline.tasks import STEPS, extract_shared

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


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


def _expected_manifest(ctx: StepContext, name: str, step: Step) -> dict:
    inputs = {}
    for upstream in step.upstream:
        if upstream in ctx.config.steps:
            manifest = json.loads((ctx.step_dir(upstream) / MANIFEST).read_text())
            inputs[upstream] = hashlib.sha256(json.dumps(manifest["outputs"], sort_keys=True).encode()).hexdigest()
    return {
        "step": name,
        "subject": ctx.subject,
        "config": ctx.config.digest(*step.sections),
        "sections": list(step.sections),
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


def run_step(ctx: StepContext, name: str, step: Step) -> bool:
    """Run one step unless its manifest already matches; returns ``True`` when it ran."""
    final = ctx.step_dir(name)
    expected = _expected_manifest(ctx, name, step)
    if _matches(final, expected):
        log.info("%s %s: up to date, skipped", ctx.subject, name)
        return False
    tmp = ctx.subject_dir / f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    start, started = time.perf_counter(), time.time()
    try:
        step.run(ctx, tmp)
        timing = {
            "started": started,
            "finished": time.time(),
            "seconds": round(time.perf_counter() - start, 3),
            "pid": os.getpid(),
        }
        manifest = {**expected, **timing, "outputs": output_digests(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        honour_umask(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("%s %s: done in %.1f s", ctx.subject, name, time.perf_counter() - start)
    return True


def run_subject_step(config: PipelineConfig, subject: str, name: str, *after: object) -> tuple[str, str, bool, float]:
    """Run step ``name`` of ``subject`` (``after``: results of the tasks it waits for, unused).

    Returns ``(subject, step, ran, seconds)``.
    """
    ctx = StepContext(config, subject, config.output / subject)
    ctx.subject_dir.mkdir(parents=True, exist_ok=True)
    clean_temporaries(ctx.subject_dir)  # a subject's steps run one at a time: any temporary is a killed run's
    start = time.perf_counter()
    ran = run_step(ctx, name, STEPS[name])
    return subject, name, ran, time.perf_counter() - start


def run_subject(config: PipelineConfig, subject: str, steps: Sequence[str] | None = None) -> dict[str, bool]:
    """Run the configured steps (or those of ``steps``) for one subject, in order, in this process.

    Returns which steps ran (``False`` = skipped because its manifest matched).
    """
    wanted = config.steps if steps is None else steps
    return {name: run_subject_step(config, subject, name)[2] for name in config.steps if name in wanted}


def _submit_all(client, config: PipelineConfig) -> list:
    """One task per subject and step, chained per subject, with one shared feature extraction after ``validate``.

    Extracting the union of every subject's stimuli in one task computes shared stimuli once and makes each
    subject's features independent of which subject ran first, so results do not depend on scheduling. Each
    subject's chain is placed on one worker (subjects spread over the workers), so subjects run in parallel.
    """
    workers = sorted(client.scheduler_info().get("workers", {}))
    chains: dict[str, object] = dict.fromkeys(config.subjects)
    futures = []

    def submit(subject: str, name: str, *after: object):
        i = config.subjects.index(subject)
        where = {"workers": [workers[i % len(workers)]], "allow_other_workers": True} if workers else {}
        future = client.submit(run_subject_step, config, subject, name, *after, pure=False, **where)
        futures.append(future)
        return future

    if "validate" in config.steps:
        chains = {s: submit(s, "validate") for s in config.subjects}
    shared = None
    if "extract" in config.steps:
        shared = client.submit(extract_shared, config, *[f for f in chains.values() if f is not None], pure=False)
    for name in config.steps:
        if name != "validate":
            chains = {s: submit(s, name, *[f for f in (chains[s], shared) if f is not None]) for s in config.subjects}
    return futures


def _fit_note(folder: Path) -> str:
    """``"; mean r 0.123 (how it was obtained)"`` from a fit's ``summary.json``, or nothing."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
        how = summary.get("methods", {}).get("r", "").split(":")[0]
        return f"; mean r {summary['mean_r']['all']['all']:.3f}" + (f" ({how})" if how else "")
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _caption_note(folder: Path) -> str:
    """``"; 11 of 13 ROI captions beat their shuffled control (validation)"`` from ``captions.csv``, or nothing."""
    try:
        with open(folder / "captions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        beats = sum(row["beats_shuffled"] == "True" for row in rows)
        splits = ", ".join(sorted({row["split"] for row in rows}))
        return f"; {beats} of {len(rows)} ROI captions beat their shuffled control ({splits})"
    except (OSError, KeyError):
        return ""


def run_pipeline(
    config: PipelineConfig,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    client=None,
    echo: Callable[[str], object] | None = None,
) -> dict[str, dict]:
    """Run every subject of ``config`` on dask.distributed, subjects in parallel, one task per step.

    Parameters
    ----------
    config : PipelineConfig
        The validated configuration.
    scheduler, n_workers
        Where to run when no ``client`` is given (see :func:`~braincode.pipeline.cluster.cluster_client`): by
        default a local cluster of ``n_workers`` processes, started and closed here.
    client : dask.distributed.Client, optional
        A client to run on (left open).
    echo : callable, optional
        Called with one line per finished step (e.g. ``print``), as steps finish.

    Returns
    -------
    dict
        ``{subject: {step: ran}}``, steps in their configured order.
    """
    from dask.distributed import as_completed

    if client is None:
        with cluster_client(scheduler, min(n_workers, len(config.subjects))) as own:
            return run_pipeline(config, client=own, echo=echo)
    config.output.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, bool]] = {s: {} for s in config.subjects}
    futures = _submit_all(client, config)
    for i, future in enumerate(as_completed(futures), 1):
        subject, name, ran, seconds = future.result()
        results[subject][name] = ran
        if echo is not None:
            notes = {"fit": _fit_note, "caption": _caption_note}
            note = notes[name](config.output / subject / name) if name in notes else ""
            echo(f"[{i}/{len(futures)}] {subject} {name}: {f'done in {seconds:.1f} s' if ran else 'up to date'}{note}")
    return {s: {name: results[s][name] for name in config.steps} for s in config.subjects}
