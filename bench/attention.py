"""Benchmark of braincode.kernels: chunked attention vs torch SDPA vs the materialised reference, and
softmax_project vs the same projection written as plain matmuls in chunks (two passes). One JSON line per case.

    python bench/attention.py                       # CPU: B=4, H=8, Lk=257, d=64, Lq in {4096, 32768}
    python bench/attention.py --skip-project        # attention only
    python bench/attention.py --device cuda         # adds the triton backend
    TRITON_INTERPRET=1 python bench/attention.py --impls chunked sdpa triton --modes forward --lq 64 --lk 17 \
        --batch 1 --heads 2 --dim 16 --skip-project --in-process   # a CPU smoke run (bench/gpu.sh --smoke)

Method. Every measurement runs in a fresh subprocess so that allocator caches of one case never flatter another.
The child builds its inputs, runs the case once (warm-up), then resets the kernel's peak-RSS counter
(``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and records VmRSS as the baseline, runs the case
``--repeats`` times and reads VmHWM: ``peak_mb`` is VmHWM - baseline, the memory the call needs beyond its
inputs, including its outputs (``output_mb``; for forward+backward also the gradients), and ``workspace_mb`` is
``peak_mb - output_mb``. Without clear_refs the child falls back to ``ru_maxrss`` (then the warm-up is skipped).
On CUDA it uses ``torch.cuda.max_memory_allocated``. Times are the median of the repeats; cases are interleaved
over ``--rounds`` rounds and the fastest round is kept (the machine may be shared: compare ratios, not seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from braincode.kernels import attention, softmax_project

MB = 2**20


# ---------------------------------------------------------------- memory probes (child side)
class Probe:
    """Peak memory of what runs between ``start()`` and ``peak_mb()``, in MiB above the baseline."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.exact = device == "cuda" or _reset_hwm()

    def start(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            _reset_hwm()
            self.base = _status_kb("VmRSS") * 1024

    def peak_mb(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.base) / MB
        peak = _status_kb("VmHWM") * 1024 if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return (peak - self.base) / MB


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _timed(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------- attention cases (child side)
def _reference(q, k, v):
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.matmul(torch.softmax(scores, dim=-1), v)


IMPLS = {
    "chunked": lambda q, k, v: attention(q, k, v, backend="chunked"),
    "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    "reference": _reference,
    "triton": lambda q, k, v: attention(q, k, v, backend="triton"),
}


def attention_case(impl: str, lq: int, mode: str, args) -> dict:
    gen = torch.Generator().manual_seed(0)
    dtype = getattr(torch, args.dtype)
    shape_q, shape_k = (args.batch, args.heads, lq, args.dim), (args.batch, args.heads, args.lk, args.dim)
    q, k, v = (torch.randn(s, generator=gen).to(args.device, dtype) for s in (shape_q, shape_k, shape_k))
    grad_out = torch.randn(shape_q, generator=gen).to(args.device, dtype)
    fn = IMPLS[impl]
    if mode == "forward":
        def run():
            with torch.no_grad():
                fn(q, k, v)
        output_mb = q.numel() * q.element_size() / MB
    else:
        for t in (q, k, v):
            t.requires_grad_()

        def run():
            fn(q, k, v).backward(grad_out)
            for t in (q, k, v):
                t.grad = None
        output_mb = 2 * (q.numel() + k.numel() + v.numel()) * q.element_size() / MB
    probe = Probe(args.device)
    if probe.exact:
        run()
    probe.start()
    seconds = _timed(run, args.repeats, args.device)
    return {"time_s": seconds, "peak_mb": probe.peak_mb(), "output_mb": output_mb}


# ---------------------------------------------------------------- projection cases (child side)
def _key_file(args) -> Path:
    path = Path(tempfile.gettempdir()) / f"braincode_bench_keys_{args.project_keys}x{args.project_dim}.npy"
    if not path.exists():
        tmp = path.with_suffix(".tmp.npy")
        keys = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                         shape=(args.project_keys, args.project_dim))
        rng = np.random.default_rng(0)
        for start in range(0, args.project_keys, 65536):
            block = rng.standard_normal((min(65536, args.project_keys - start), args.project_dim), np.float32)
            keys[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        keys.flush()
        del keys
        os.replace(tmp, path)
    return path


def _plain_two_pass(q: torch.Tensor, keys: np.ndarray, temperature: float, chunk: int) -> torch.Tensor:
    """The peer: plain matmuls in chunks, a first pass for the log-sum-exp and a second for the weighted sum."""
    lse = torch.full((q.shape[0],), float("-inf"), device=q.device)
    for start in range(0, len(keys), chunk):
        k = torch.from_numpy(np.array(keys[start:start + chunk])).to(q.device)
        lse = torch.logaddexp(lse, torch.logsumexp(temperature * q @ k.T, dim=1))
    out = torch.zeros(q.shape[0], keys.shape[1], device=q.device)
    for start in range(0, len(keys), chunk):
        k = torch.from_numpy(np.array(keys[start:start + chunk])).to(q.device)
        out += torch.exp(temperature * q @ k.T - lse[:, None]) @ k
    return out


def project_case(impl: str, args) -> dict:
    keys = np.load(_key_file(args), mmap_mode="r")
    q = torch.randn(args.project_queries, args.project_dim, generator=torch.Generator().manual_seed(1))
    q = (q / q.norm(dim=1, keepdim=True)).to(args.device)
    chunk = 256 * MB // (4 * args.project_queries)
    if impl == "softmax_project":
        def run():
            softmax_project(q, keys, temperature=args.temperature, key_chunk=chunk)
    else:
        def run():
            _plain_two_pass(q, keys, args.temperature, chunk)
    probe = Probe(args.device)
    probe.start()
    seconds = _timed(run, 1, args.device)
    return {"time_s": seconds, "peak_mb": probe.peak_mb(), "total_peak_rss_mb": _status_kb("VmHWM") / 1024}


# ---------------------------------------------------------------- parent side
def _run_case(case: dict, args) -> dict:
    if case["kind"] == "attention":
        return attention_case(case["impl"], case["lq"], case["mode"], args)
    return project_case(case["impl"], args)


def _child(case: dict, argv: list[str], args) -> dict:
    if args.in_process:  # one process for all cases: exact on CUDA (peak counters reset); on CPU a smoke run only
        return _run_case(case, args)
    cmd = [sys.executable, __file__, *argv, "--case", json.dumps(case)]
    env = {**os.environ, "BRAINCODE_PROGRESS": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _best(results: list[dict]) -> dict:
    fastest = min(results, key=lambda r: r["time_s"])
    return {**fastest, "peak_mb": max(r["peak_mb"] for r in results)}


def _ratio(best: dict, a: str, b: str, field: str = "time_s") -> float | None:
    if a not in best or b not in best or best[b][field] <= 0:
        return None
    return round(best[a][field] / best[b][field], 3)


def run_attention(args, argv) -> None:
    impls = args.impls or ["chunked", "sdpa", "reference"] + (["triton"] if args.device == "cuda" else [])
    for lq in args.lq:
        for mode in args.modes:
            rounds = {impl: [] for impl in impls}
            for _ in range(args.rounds):
                for impl in impls:
                    case = {"kind": "attention", "impl": impl, "lq": lq, "mode": mode}
                    rounds[impl].append(_child(case, argv, args))
            best = {impl: _best(r) for impl, r in rounds.items()}
            line = {
                "bench": "attention", "device": args.device, "dtype": args.dtype, "mode": mode, "B": args.batch,
                "H": args.heads, "Lq": lq, "Lk": args.lk, "d": args.dim,
                "time_s": {i: round(b["time_s"], 4) for i, b in best.items()},
                "peak_mb": {i: round(b["peak_mb"], 1) for i, b in best.items()},
                "output_mb": round(next(iter(best.values()))["output_mb"], 1),
                "time_ratio_chunked_vs_sdpa": _ratio(best, "chunked", "sdpa"),
                "time_ratio_chunked_vs_reference": _ratio(best, "chunked", "reference"),
                "peak_ratio_chunked_vs_reference": _ratio(best, "chunked", "reference", "peak_mb"),
                "time_ratio_triton_vs_sdpa": _ratio(best, "triton", "sdpa"),
                "peak_ratio_triton_vs_sdpa": _ratio(best, "triton", "sdpa", "peak_mb"),
            }
            if "chunked" in best and "reference" in best:
                workspace = {i: best[i]["peak_mb"] - best[i]["output_mb"] for i in ("chunked", "reference")}
                if workspace["reference"] > 0:
                    line["workspace_ratio_chunked_vs_reference"] = round(
                        workspace["chunked"] / workspace["reference"], 3)
            print(json.dumps({k: v for k, v in line.items() if v is not None}), flush=True)


def run_project(args, argv) -> None:
    results = {impl: _child({"kind": "project", "impl": impl}, argv, args) for impl in args.project_impls}
    line = {
        "bench": "softmax_project", "device": args.device, "queries": args.project_queries,
        "keys": args.project_keys, "dim": args.project_dim, "temperature": args.temperature,
        **{field: {impl: round(r[field], 2) for impl, r in results.items()}
           for field in ("time_s", "peak_mb", "total_peak_rss_mb")},
    }
    if len(results) == 2:
        line["time_ratio_vs_plain"] = round(results["softmax_project"]["time_s"] / results["plain_two_pass"]["time_s"], 3)
    print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--lk", type=int, default=257)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--lq", type=int, nargs="+", default=[4096, 32768])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--project-queries", type=int, default=20000)
    p.add_argument("--project-keys", type=int, default=1_000_000)
    p.add_argument("--project-dim", type=int, default=512)
    p.add_argument("--temperature", type=float, default=150.0)
    p.add_argument("--project-impls", nargs="+", default=["softmax_project", "plain_two_pass"],
                   choices=["softmax_project", "plain_two_pass"])
    p.add_argument("--impls", nargs="+", choices=sorted(IMPLS),
                   help="attention implementations (default: chunked sdpa reference, and triton on CUDA)")
    p.add_argument("--modes", nargs="+", default=["forward", "forward+backward"], choices=["forward", "forward+backward"])
    p.add_argument("--in-process", action="store_true", help="run every case in this process (exact on CUDA; on the CPU for smoke runs)")
    p.add_argument("--skip-project", action="store_true")
    p.add_argument("--skip-attention", action="store_true")
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(_run_case(json.loads(args.case), args)))
        return
    parent_argv = [a for a in argv if a != "--case"]
    if not args.skip_attention:
        run_attention(args, parent_argv)
    if not args.skip_project:
        run_project(args, parent_argv)


if __name__ == "__main__":
    main()
