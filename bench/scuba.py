"""Benchmark: BrainSCUBA projection of voxel weights onto a 10^6-entry embedding bank, streamed from disk
(braincode) against the dense computation with the whole bank and score matrix in memory (the reference code's
approach). Prints one JSON line with both times, peak memories and their ratios, and the largest difference.
``--table`` instead prints the caption evaluation table on the synthetic subject (bench/scuba_table.py).

    BRAINCODE_PROGRESS=0 .venv/bin/python bench/scuba.py                # 10^6 x 512 bank, 512 voxels
    BRAINCODE_PROGRESS=0 .venv/bin/python bench/scuba.py --n-bank 100000 --dim 64
    BRAINCODE_PROGRESS=0 .venv/bin/python bench/scuba.py --table

Method. The bank (unit rows + norms, the layout of :mod:`braincode.interpret.bank`) is written once to a
temporary folder. Each case runs in a fresh subprocess: it loads the weights, records VmRSS, runs the projection,
and reports VmHWM - VmRSS as ``peak_mb`` (the memory the call needs beyond its inputs; for the streamed case
memory-mapped pages count while resident, and the kernel hands them back after each chunk). The machine may be
shared: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

MB = 2**20


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def write_bank(folder: Path, n: int, dim: int, seed: int = 0, chunk: int = 65536) -> None:
    """A random bank in the documented layout, written chunk by chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    unit = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    norms = np.lib.format.open_memmap(folder / "norms.npy", mode="w+", dtype=np.float32, shape=(n,))
    for start in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        norm = np.linalg.norm(x, axis=1)
        unit[start:start + len(x)] = x / norm[:, None]
        norms[start:start + len(x)] = norm
    unit.flush()
    norms.flush()
    del unit, norms
    pd.DataFrame({"id": np.arange(n), "path": "", "caption": ""}).to_csv(folder / "items.csv", index=False)
    (folder / "bank.json").write_text(json.dumps({"n": n, "dim": dim, "has_captions": False, "has_paths": False}))


def _child(case: str, bank_dir: Path, weights_path: Path, out_path: Path, temperature: float) -> dict:
    import torch

    from braincode.interpret.bank import load_bank
    from braincode.interpret.scuba import project

    w = np.load(weights_path)
    bank = load_bank(bank_dir)
    _reset_peak()
    base = _status("VmRSS")
    start = time.perf_counter()
    if case == "stream":
        out = project(w, bank, temperature=temperature, device="cpu")
    else:  # dense: whole bank and the (n_voxels, n_bank) score matrix in memory
        unit = torch.from_numpy(np.array(bank.unit))
        norms = torch.from_numpy(np.array(bank.norms))
        q = torch.nn.functional.normalize(torch.from_numpy(w), dim=1)
        s = torch.softmax(temperature * q @ unit.T, dim=1)
        direction = torch.nn.functional.normalize(s @ unit, dim=1)
        out = (direction * (s @ norms)[:, None]).numpy()
    seconds = time.perf_counter() - start
    np.save(out_path, out)
    return {"seconds": seconds, "peak_mb": _status("VmHWM") - base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-bank", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--n-voxels", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=150.0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true", help="the caption evaluation table (bench/scuba_table.py)")
    args, rest = parser.parse_known_args()
    if args.table:
        sys.path.insert(0, str(Path(__file__).parent))
        from scuba_table import main as table

        table(rest)
        return
    if args.child:
        case, bank_dir, weights, out = args.child
        print(json.dumps(_child(case, Path(bank_dir), Path(weights), Path(out), args.temperature)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        write_bank(tmp / "bank", args.n_bank, args.dim)
        write_s = time.perf_counter() - start
        np.save(tmp / "w.npy", np.random.default_rng(1).standard_normal((args.n_voxels, args.dim), dtype=np.float32))
        results = {}
        for case in ("stream", "dense"):
            cmd = [sys.executable, __file__, "--temperature", str(args.temperature), "--child", case,
                   str(tmp / "bank"), str(tmp / "w.npy"), str(tmp / f"{case}.npy")]
            results[case] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        diff = float(np.abs(np.load(tmp / "stream.npy") - np.load(tmp / "dense.npy")).max())
    bank_mb = args.n_bank * args.dim * 4 / MB
    print(json.dumps({
        "bench": "scuba.project", "n_bank": args.n_bank, "dim": args.dim, "n_voxels": args.n_voxels,
        "bank_mb": round(bank_mb, 1), "write_bank_s": round(write_s, 1),
        "stream_s": round(results["stream"]["seconds"], 2), "dense_s": round(results["dense"]["seconds"], 2),
        "stream_peak_mb": round(results["stream"]["peak_mb"], 1), "dense_peak_mb": round(results["dense"]["peak_mb"], 1),
        "time_ratio_dense_over_stream": round(results["dense"]["seconds"] / results["stream"]["seconds"], 2),
        "memory_ratio_dense_over_stream": round(results["dense"]["peak_mb"] / max(results["stream"]["peak_mb"], 1), 1),
        "max_abs_diff": diff,
    }))


if __name__ == "__main__":
    main()
