"""One GPU check (run through ``bench/gpu.sh``): every GPU path of braincode, timed, into one JSON file.

Sections, each in its own process with a time limit taken from one overall budget (a section that cannot finish
in time is recorded as skipped, one that fails records its error; the JSON is always written):

- ``triton_tests``: ``tests/kernels`` with the Triton kernels compiled for the GPU (``TRITON_INTERPRET`` unset);
- ``attention``: ``bench/attention.py`` on CUDA in float32 and bfloat16, against SDPA and the reference;
- ``ridge``: ``RidgeEncoder`` on CUDA against himalaya's ``RidgeCV`` on its ``torch_cuda`` backend (same folds),
  where features are fewer and where they are more than samples, and at an Algonauts subject's size (9,841
  images, 12,800 features, 39,548 vertices; random data); a line per finished case, so a timeout keeps them;
- ``features``: images per second of ``get_extractor(...).extract`` over PNG files (decode, preprocessing,
  forward, copy back), ViT-B/16 (timm, random weights), two layers;
- ``dive``: BrainDiVE with the Stable-Diffusion-2.1-base architecture (random weights), 512 px, 50 steps,
  fp16, seconds per image at batch 1 and 4; the encoder is a random linear readout of a ViT-B/16's pooled embedding.

``--smoke`` (or no CUDA device): the same sections at tiny sizes on the CPU, Triton interpreted
(``TRITON_INTERPRET=1``), in about a minute on two quiet cores. ``--prepare`` and ``--install`` handle the dependency wheels
(see ``bench/gpu.sh``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
#: Seconds for all sections together (the GPU machine's limit is 8 minutes, installing included).
BUDGET = {"gpu": 420.0, "smoke": 150.0}


# ---------------------------------------------------------------- sections (parent side)
def _env(smoke: bool) -> dict[str, str]:
    env = {**os.environ, "BRAINCODE_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("TRITON_INTERPRET", None)
    if smoke:
        env["TRITON_INTERPRET"] = "1"
    return env


def _run(cmd: list[str], smoke: bool, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=_env(smoke), capture_output=True, text=True, timeout=timeout,
                          check=False)


def _json_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _json_lines(done: subprocess.CompletedProcess) -> list[dict]:
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
    return _json_of(done.stdout)


def triton_tests(smoke: bool, timeout: float) -> dict:
    """``tests/kernels`` (smoke: three float32 Triton cases, interpreted), with pytest's counts."""
    target = ["tests/kernels/test_triton.py", "-k", "matches_reference and dtype0"] if smoke else ["tests/kernels"]
    # the GPU machine has no open_clip: its capture tests (no Triton in them) are left out there, and said so
    ignored = [] if smoke or importlib.util.find_spec("open_clip") else ["tests/kernels/test_maps.py"]
    target += [f"--ignore={path}" for path in ignored]
    code = "from braincode.kernels.triton import _autograd; print(_autograd.interpreted())"
    probe = _run([sys.executable, "-c", code], smoke, 60)
    done = _run([sys.executable, "-m", "pytest", *target, "-q", "-p", "no:cacheprovider", "-o",
                 "addopts=--import-mode=importlib"], smoke, timeout)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    failures = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"status": "ok" if done.returncode == 0 else "failed", "interpreted": probe.stdout.strip() == "True",
            "exit_code": done.returncode, **counts, "summary": summary, "failures": failures[:20],
            "ignored": ignored}


def attention(smoke: bool, timeout: float) -> dict:
    """``bench/attention.py``: float32 and bfloat16 on CUDA (smoke: float32, tiny, in one process)."""
    if smoke:
        runs = {"float32": ["--device", "cpu", "--impls", "chunked", "sdpa", "reference", "triton", "--modes",
                            "forward", "--lq", "64", "--lk", "17", "--batch", "1", "--heads", "2", "--dim", "16",
                            "--repeats", "1", "--rounds", "1", "--in-process"]}
    else:
        # in one process per dtype: CUDA peaks come from the allocator's counters, reset before each case
        common = ["--device", "cuda", "--lq", "4096", "32768", "--repeats", "5", "--rounds", "1", "--in-process"]
        runs = {"float32": common, "bfloat16": [*common, "--dtype", "bfloat16"]}
    lines, start = [], time.perf_counter()
    for dtype, argv in runs.items():
        left = timeout - (time.perf_counter() - start)
        try:
            lines += _json_lines(_run([sys.executable, str(BENCH / "attention.py"), "--skip-project", *argv], smoke,
                                      max(left, 1.0)))
        except subprocess.TimeoutExpired:  # keep the other dtype's lines
            lines.append({"bench": "attention", "dtype": dtype, "status": "timeout"})
    return {"lines": lines}


def child_section(name: str) -> callable:
    """A section computed in a child process of this script (``--child NAME``)."""
    def section(smoke: bool, timeout: float) -> dict:
        cmd = [sys.executable, __file__, "--child", name] + (["--smoke"] if smoke else [])
        try:
            lines = _json_lines(_run(cmd, smoke, timeout))
        except subprocess.TimeoutExpired as stop:  # the lines printed before the timeout, if any
            lines = _json_of(stop.stdout.decode() if isinstance(stop.stdout, bytes) else stop.stdout or "")
            if not lines:
                raise
            return {"status": "timeout", "why": f"stopped after {timeout:.0f} s; the finished part"} | lines[-1]
        return lines[-1]
    section.__name__ = name
    return section


SECTIONS = [triton_tests, attention, child_section("ridge"), child_section("features"), child_section("dive")]


# ---------------------------------------------------------------- child sections
def _device(smoke: bool):
    import torch

    return torch.device("cpu" if smoke else "cuda")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def ridge(smoke: bool) -> dict:
    """braincode ``RidgeEncoder`` vs himalaya ``RidgeCV`` (torch_cuda; smoke: torch on CPU), same folds and
    alphas, both timed after a warm-up fit on the GPU; the data of ``bench/ridge.py``."""
    import numpy as np
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score
    from sklearn.model_selection import KFold

    sys.path.insert(0, str(BENCH))
    from ridge import ALPHAS, N_FOLDS, alphas_differ, make_data, relative_prediction_diff

    from braincode.encoding import RidgeEncoder

    device = _device(smoke)
    backend = "torch" if smoke else "torch_cuda"
    # the last GPU case is an Algonauts subject's size (bench/scale.py's fit, on random features)
    sizes = [(200, 32, 100)] if smoke else [(4000, 768, 20000), (5000, 6000, 4000), (9841, 12800, 39548)]
    cases = []
    for i, (n, p, v) in enumerate(sizes):
        X, Y, Xt = make_data(n, p, v)
        cv = KFold(N_FOLDS)

        def ours(X=X, Y=Y, Xt=Xt, cv=cv):
            model = RidgeEncoder(alphas=ALPHAS, cv=cv, device=str(device)).fit(X, Y)
            _sync(device)
            return model.predict(Xt), np.asarray(model.best_alphas_)

        def theirs(X=X, Y=Y, Xt=Xt, cv=cv):
            be = set_backend(backend)
            model = RidgeCV(alphas=ALPHAS, cv=cv, fit_intercept=True,
                            solver_params={"score_func": r2_score}).fit(X, Y)
            _sync(device)
            return be.to_numpy(model.predict(Xt)), be.to_numpy(model.best_alphas_)

        timings = {}
        for name, fn in (("braincode", ours), ("himalaya", theirs)):
            if not smoke and i == 0:
                fn()  # warm-up: CUDA context, kernels, allocator
            start = time.perf_counter()
            timings[name] = (fn(), time.perf_counter() - start)
        set_backend("numpy")
        (pred_b, alpha_b), t_b = timings["braincode"]
        (pred_h, alpha_h), t_h = timings["himalaya"]
        differ = alphas_differ(alpha_b, alpha_h)
        cases.append({"n": n, "p": p, "v": v, "alphas": len(ALPHAS), "folds": N_FOLDS, "braincode_s": round(t_b, 3),
                      f"himalaya_{backend}_s": round(t_h, 3), "ratio_himalaya_over_braincode": round(t_h / t_b, 2),
                      "max_rel_pred_diff": relative_prediction_diff(pred_b, pred_h, ~differ),
                      "share_alpha_differs": float(differ.mean())})
        print(json.dumps({"backend": backend, "cases": cases}), flush=True)  # a timeout keeps the finished cases
    return {"backend": backend, "cases": cases}


def features(smoke: bool) -> dict:
    """Images per second of ``Extractor.extract`` over PNG files (after a warm-up batch on the GPU)."""
    import numpy as np
    from PIL import Image

    from braincode.data.core import Stimuli
    from braincode.features import get_extractor

    device = _device(smoke)
    model = "timm:vit_tiny_patch16_224@random" if smoke else "timm:vit_base_patch16_224@random"
    n, side, batch = (8, 64, 4) if smoke else (1024, 256, 128)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n):
            paths.append(Path(tmp) / f"img-{i:05d}.png")
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(paths[-1])
        stimuli = Stimuli(ids=[p.stem for p in paths], paths=paths)
        extractor = get_extractor(model, layers=["blocks.6", "pooled"], device=str(device))
        if not smoke:  # warm-up: CUDA context, kernels, allocator
            extractor.extract(Stimuli(ids=stimuli.ids[:batch], paths=paths[:batch]), batch_size=batch,
                              progress=False)
        _sync(device)
        start = time.perf_counter()
        out = extractor.extract(stimuli, batch_size=batch, progress=False)
        _sync(device)
        seconds = time.perf_counter() - start
    return {"model": model, "layers": {k: list(v.shape) for k, v in out.items()}, "images": n, "image_px": side,
            "batch": batch, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1)}


def dive(smoke: bool) -> dict:
    """BrainDiVE seconds per image (``bench/dive.py``'s presets and timer; a timm ViT-B/16 encoder)."""
    import numpy as np
    import pandas as pd
    import torch

    sys.path.insert(0, str(BENCH))
    from dive import PRESETS, timed

    from braincode.encoding.torch_encoder import LinearReadout, TorchEncoder
    from braincode.features import get_extractor
    from braincode.features.design import FeatureSpec
    from braincode.interpret._dive_models import random_diffusion
    from braincode.interpret.dive import BrainDiVEPipeline, Objective

    device = _device(smoke)
    config, dtype = ("tiny", torch.float32) if smoke else ("sd21-base", torch.float16)
    steps, size = (2, PRESETS["tiny"]["size"]) if smoke else (PRESETS[config]["steps"], PRESETS[config]["size"])
    encoder_id = "timm:vit_tiny_patch16_224@random" if smoke else "timm:vit_base_patch16_224@random"
    torch.manual_seed(0)
    extractor = get_extractor(encoder_id, layers=["pooled"], device=str(device))
    n_voxels, n_features = 2000, int(extractor.model.num_features)
    weights = np.random.default_rng(0).normal(size=(n_voxels, n_features)) / np.sqrt(n_features)
    voxels = pd.DataFrame({"hemisphere": "lh", "vertex": np.arange(n_voxels)})
    encoder = TorchEncoder(extractor, FeatureSpec(encoder_id), LinearReadout(weights, np.zeros(n_voxels)),
                           voxels=voxels)
    parts = random_diffusion(config)
    pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, encoder)
    pipe.to(device)
    if dtype != torch.float32:
        pipe.set_precision(dtype, channels_last=device.type == "cuda")
    objective = Objective("first-500", tuple(range(500)))
    if not smoke:
        timed(pipe, objective, [0], 2, size, 130.0)  # warm-up: CUDA context, kernels, allocator
    runs = []
    for batch in (1,) if smoke else (1, 4):
        seconds, peak, out = timed(pipe, objective, list(range(batch)), steps, size, 130.0)
        runs.append({"batch": batch, "s_per_image": round(seconds / batch, 3), "peak_mem_gib": round(peak, 2),
                     "guided_objective": round(float(out.scores.mean()), 4)})
    return {"config": config, "encoder": encoder_id, "steps": steps, "size": size,
            "dtype": str(dtype).replace("torch.", ""), "runs": runs}


CHILDREN = {"ridge": ridge, "features": features, "dive": dive}


# ---------------------------------------------------------------- driver
def _platform(smoke: bool) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "smoke": smoke,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not smoke else "cpu"}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def run_all(out: Path, smoke: bool, budget: float) -> dict:
    """Run every section within ``budget`` seconds and write the JSON to ``out`` (also when sections fail)."""
    start = time.perf_counter()
    result = {**_platform(smoke), "budget_s": budget, "sections": {}}
    for section in SECTIONS:
        left = budget - (time.perf_counter() - start)
        if left < 5:
            result["sections"][section.__name__] = {"status": "skipped", "why": "time budget spent"}
            continue
        t0 = time.perf_counter()
        try:
            data = {"status": "ok"} | section(smoke, left)
        except subprocess.TimeoutExpired:
            data = {"status": "timeout", "why": f"stopped after {left:.0f} s (the budget left)"}
        except (RuntimeError, OSError, ValueError, KeyError, IndexError) as error:  # keep the others' results
            data = {"status": "error", "why": f"{type(error).__name__}: {error}"[-2000:]}
        result["sections"][section.__name__] = {**data, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{section.__name__}: {data['status']} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    result["total_s"] = round(time.perf_counter() - start, 1)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu.json"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (also chosen when CUDA is absent)")
    p.add_argument("--budget", type=float, help="seconds for all sections (default: 420 on a GPU, 150 smoke)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.smoke)))
        return
    import torch

    smoke = args.smoke or not torch.cuda.is_available()
    run_all(args.out, smoke, args.budget or BUDGET["smoke" if smoke else "gpu"])


if __name__ == "__main__":
    main()
