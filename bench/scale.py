"""Benchmark: an Algonauts-size subject end to end, and a whole-cortex ridge fit, on this machine.

Default line (``"bench": "scale"``):

1. writes (deterministically, into ``--folder`` or a temporary folder) a synthetic subject at the real Algonauts
   2023 size, times ``--scale``: 9,841 train / 159 test images of 32 px, 19,004 + 20,544 vertices. Images and the
   ground truth come from :func:`braincode.data.synthetic.make_synthetic`; its few hundred voxels are spread over
   the real vertex counts (each vertex copies the clean response and ROI labels of one synthetic voxel and draws
   its own noise, so the truth is known everywhere);
2. extracts the features once into a cache (``--model``, one block's grid-pooled tokens plus the pooled embedding:
   12,800 features for ViT-B-32), timed in a subprocess;
3. runs ``braincode fit`` on the cached features in a subprocess: wall time and its peak resident memory;
4. scores its test predictions against the noiseless truth (mean r over the voxels with signal); its progress
   bars (each phase with its elapsed time) go to ``FOLDER/fit.log``;
5. fits himalaya ``RidgeCV`` (torch backend; ``--himalaya-backend``) on the same cached features, standardised as
   braincode does, with the same folds (shuffled K-fold, seed 0), and reports the time ratio, the largest absolute
   test-prediction difference where the chosen alphas agree and, where they differ, the largest gap between the
   float64 CV R^2 of himalaya's alpha and braincode's, computed exactly on those folds; and, for 64 random
   voxels where the alphas agree, and for the 64 where the two tools' predictions differ most, each tool's largest
   relative test-prediction difference from a float64 refit (which of the two is off when they differ).

``--nsd`` line (``"bench": "nsd_scale"``): a ridge fit over all 327,684 fsaverage vertices of both hemispheres
(3,000 images, ``--features`` features), responses a float32 memory-mapped ``.npy`` of synthetic data (a linear
signal plus noise), in a subprocess: fit time and peak resident memory.

Run: ``nice -n 5 .venv/bin/python bench/scale.py [--scale 0.1] [--folder DIR] [--device cuda]`` and
``nice -n 5 .venv/bin/python bench/scale.py --nsd``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = {"n_train": 9841, "n_test": 159, "lh": 19004, "rh": 20544}
NSD_VERTICES, NSD_IMAGES = 2 * 163_842, 3000
ENV = {**os.environ, "BRAINCODE_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def write_subject(root: Path, scale: float, seed: int) -> dict:
    """The synthetic subject at ``scale`` times the Algonauts size; returns its sizes (reuses a finished one)."""
    from braincode.data.synthetic import load_truth, make_synthetic

    sizes = {"n_train": max(50, round(SIZE["n_train"] * scale)), "n_test": max(20, round(SIZE["n_test"] * scale)),
             "lh": max(100, round(SIZE["lh"] * scale)), "rh": max(100, round(SIZE["rh"] * scale))}
    done = root / "scale.json"
    if done.exists() and json.loads(done.read_text()) == {**sizes, "seed": seed}:
        return sizes
    make_synthetic(root, n_train=sizes["n_train"], n_test=sizes["n_test"], image_size=32, seed=seed, overwrite=True)
    truth = load_truth(root)
    subject = root / "subj01"
    rng = np.random.default_rng(seed + 1)
    clean_test = []
    for hemi in ("lh", "rh"):
        own = np.flatnonzero(truth.voxels["hemisphere"].to_numpy() == hemi)
        mask_file = subject / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy"
        mask = np.load(mask_file)
        extra = np.flatnonzero(~mask)[: sizes[hemi] - len(own)]
        mask[extra] = True
        vertices = np.flatnonzero(mask)  # the loader's column order
        source = np.empty(len(vertices), dtype=int)  # which synthetic voxel each vertex copies
        source[np.isin(vertices, truth.voxels["vertex"].to_numpy()[own])] = np.arange(len(own))
        source[np.isin(vertices, extra)] = rng.integers(0, len(own), len(extra))
        np.save(mask_file, mask)
        for path in (subject / "roi_masks").glob(f"{hemi}.*_challenge_space.npy"):
            np.save(path, np.load(path)[source])
        cols = own[source]
        sd = truth.voxels["noise_sd"].to_numpy()[cols].astype(np.float32)
        fmri = np.lib.format.open_memmap(subject / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy",
                                         mode="w+", dtype=np.float32, shape=(sizes["n_train"], len(cols)))
        for start in range(0, sizes["n_train"], 1000):  # chunks keep memory near one block of rows
            rows = slice(start, min(start + 1000, sizes["n_train"]))
            noise = rng.standard_normal((rows.stop - rows.start, len(cols)), dtype=np.float32) * sd
            fmri[rows] = truth.train_clean[rows][:, cols] + noise
        fmri.flush()
        del fmri
        clean_test.append(truth.test_clean[:, cols])
    np.save(root / "test_clean_scaled.npy", np.concatenate(clean_test, axis=1))
    done.write_text(json.dumps({**sizes, "seed": seed}))
    return sizes


def run_child(cmd: list[str], log: Path | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak resident GiB (``wait4``'s rusage of that child alone) and stdout of a subprocess; with
    ``log``, its stderr goes there with progress bars on (each phase's bar ends with its elapsed time)."""
    env = ENV if log is None else {**ENV, "BRAINCODE_PROGRESS": "1"}
    with tempfile.TemporaryFile("w+") as out, open(log, "w+") if log else tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{err.read()[-3000:]}")
        return seconds, usage.ru_maxrss / 2**20, out.read()


def designs(root: Path, cache: Path, args) -> dict[str, np.ndarray]:
    """The cached (or freshly extracted) design matrices of the train and test images."""
    from braincode.data import load_algonauts
    from braincode.features import FeatureStore
    from braincode.features.design import FeatureSpec, extract_design

    ds = load_algonauts(root, "subj01")
    spec = FeatureSpec(args.model, (args.layer, "pooled"), "grid", args.grid)
    stimuli = {split: ds[split].stimuli for split in ("train", "test")}
    return extract_design(stimuli, spec, store=FeatureStore(cache), device=args.device)


def himalaya_fit(X: np.ndarray, Y: np.ndarray, X_test: np.ndarray, cv: int, backend: str):
    """Standardise as braincode's default encoder does, then himalaya RidgeCV on the same folds."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    from braincode.encoding.estimators import DEFAULT_ALPHAS

    t = time.perf_counter()
    scaler = StandardScaler().fit(X)
    be = set_backend(backend)
    model = RidgeCV(alphas=np.asarray(DEFAULT_ALPHAS), cv=KFold(cv, shuffle=True, random_state=0), fit_intercept=True,
                    solver_params={"score_func": r2_score, "n_targets_batch": 4096, "warn": False})
    model.fit(scaler.transform(X).astype(np.float32), Y)
    seconds = time.perf_counter() - t
    pred = be.to_numpy(model.predict(scaler.transform(X_test).astype(np.float32)))
    alphas = be.to_numpy(model.best_alphas_).astype(np.float64)
    set_backend("numpy")
    return pred, alphas, seconds, scaler


def main_scale(args) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from ridge import (
        alphas_differ,
        exact_cv_scores,
        exact_predictions,
        relative_prediction_diff,
        relative_prediction_diffs,
    )

    from braincode.data import load_algonauts
    from braincode.encoding.metrics import pearson_r

    folder = Path(args.folder or tempfile.mkdtemp(prefix="braincode-scale-"))
    root, cache, out = folder / "data", folder / "cache", folder / "fit"
    t = time.perf_counter()
    sizes = write_subject(root, args.scale, args.seed)
    write_s = time.perf_counter() - t
    extract_cmd = [sys.executable, __file__, "--extract-only", "--folder", str(folder), "--model", args.model,
                   "--layer", args.layer, "--grid", str(args.grid), "--device", args.device]
    extraction_s, _, _ = run_child(extract_cmd)
    fit_cmd = [str(Path(sys.executable).with_name("braincode")), "fit", "--data", str(root), "--subject", "subj01",
               "--model", args.model, "--layer", args.layer, "--layer", "pooled", "--grid", str(args.grid),
               "--cv", str(args.cv), "--alpha-search", args.alpha_search, "--cache", str(cache), "--device",
               args.device, "--out", str(out)]
    fit_s, fit_rss_gb, _ = run_child(fit_cmd, log=folder / "fit.log")
    import pandas as pd

    scores = pd.read_csv(out / "scores.csv")
    pred_bc = np.concatenate([np.load(out / f"{h}_pred_test.npy") for h in ("lh", "rh")], axis=1)
    truth = np.load(root / "test_clean_scaled.npy")
    signal = truth.std(0) > 0
    r_truth = pearson_r(truth[:, signal], pred_bc[:, signal])
    line = {"bench": "scale", "scale": args.scale, **sizes, "device": args.device, "threads": int(os.cpu_count() or 0),
            "write_subject_s": round(write_s, 1), "extraction_s": round(extraction_s, 1), "fit_s": round(fit_s, 1),
            "fit_peak_rss_gb": round(fit_rss_gb, 2), "test_r_vs_truth_mean": round(float(np.mean(r_truth)), 4),
            "cv_r_mean": round(float(scores["r"].mean()), 4),
            "alpha_method": json.loads((out / "summary.json").read_text())["methods"]["alpha"]}
    if args.himalaya_backend != "none":
        X = designs(root, cache, args)
        Y = load_algonauts(root, "subj01")["train"].responses.data
        pred_h, alphas_h, t_h, scaler = himalaya_fit(X["train"], Y, X["test"], args.cv, args.himalaya_backend)
        alphas_bc = scores["alpha"].to_numpy(dtype=np.float64)
        differ = alphas_differ(alphas_bc, alphas_h)
        same = ~differ
        gap = float("nan")
        Xs = scaler.transform(X["train"])  # the standardised float32 features both tools fitted
        if differ.any():
            from sklearn.model_selection import KFold

            cols = np.flatnonzero(differ)[: args.max_gap_voxels]
            folds = KFold(args.cv, shuffle=True, random_state=0)
            ours = exact_cv_scores(Xs, Y[:, cols], alphas_bc[cols], folds)
            theirs = exact_cv_scores(Xs, Y[:, cols], alphas_h[cols], folds)
            gap = float(np.max(theirs - ours))
        line.update({
            "n_features": int(X["train"].shape[1]),
            f"himalaya_{args.himalaya_backend}_s": round(t_h, 1),
            "ratio_himalaya_over_braincode_fit": round(t_h / fit_s, 2),
            "share_alpha_differs": round(float(differ.mean()), 4),
            "max_abs_pred_diff_where_alphas_agree": float(np.abs(pred_bc - pred_h)[:, same].max()) if same.any()
            else float("nan"),
            "max_rel_pred_diff_where_alphas_agree": relative_prediction_diff(pred_bc, pred_h, same),
            "max_exact_cv_r2_gap_where_alphas_differ": gap,
        })
        if same.any():  # who is off where the alphas agree: both against a float64 refit of 64 random voxels,
            # and of the 64 where the two differ most
            agree = np.flatnonzero(same)
            k = min(64, len(agree))
            worst = agree[np.argsort(relative_prediction_diffs(pred_bc, pred_h)[agree])[-k:]]
            for key, cols in (("max_rel_pred_diff_vs_float64_refit", np.random.default_rng(args.seed).choice(
                    agree, k, False)), ("where_tools_differ_most_vs_float64_refit", worst)):
                exact = exact_predictions(Xs, Y[:, cols], scaler.transform(X["test"]), alphas_bc[cols])
                line[key] = {"voxels": len(cols),
                             "braincode": float(relative_prediction_diffs(pred_bc[:, cols], exact).max()),
                             "himalaya": float(relative_prediction_diffs(pred_h[:, cols], exact).max())}
    line["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return line


def nsd_child(folder: Path, n_features: int, seed: int) -> None:
    """Fit a ridge over every fsaverage vertex from a memory-mapped response file; print seconds and peak RSS."""
    import resource

    from braincode.encoding import RidgeEncoder

    X = np.load(folder / "X.npy")
    Y = np.load(folder / "Y.npy", mmap_mode="r")
    t = time.perf_counter()
    model = RidgeEncoder(device="cpu").fit(X, Y)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"seconds": seconds, "peak_gb": peak, "cv_r_mean": float(np.nanmean(model.cv_r_))}))


def main_nsd(args) -> dict:
    folder = Path(args.folder or tempfile.mkdtemp(prefix="braincode-nsd-"))
    folder.mkdir(parents=True, exist_ok=True)
    n, p, v = NSD_IMAGES, args.features, round(NSD_VERTICES * args.scale)
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    np.save(folder / "X.npy", X)
    Y = np.lib.format.open_memmap(folder / "Y.npy", mode="w+", dtype=np.float32, shape=(n, v))
    for start in range(0, v, 8192):  # chunks of vertices: the signal strength varies along the cortex
        cols = min(8192, v - start)
        W = rng.standard_normal((p, cols), dtype=np.float32) * np.float32(0.5 / np.sqrt(p))
        Y[:, start : start + cols] = X @ W + rng.standard_normal((n, cols), dtype=np.float32)
    Y.flush()
    del Y
    cmd = [sys.executable, __file__, "--nsd-child", "--folder", str(folder), "--features", str(p)]
    seconds, _, out = run_child(cmd)
    child = json.loads(out.strip().splitlines()[-1])
    return {"bench": "nsd_scale", "responses": "synthetic float32 memmap (load_nsd not used)", "n_images": n,
            "n_features": p, "n_vertices": v, "fit_s": round(child["seconds"], 1),
            "process_s": round(seconds, 1), "peak_rss_gb": round(child["peak_gb"], 2),
            "responses_gb": round(n * v * 4 / 2**30, 2), "cv_r_mean": round(child["cv_r_mean"], 4),
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (images, vertices)")
    parser.add_argument("--folder", help="where to write the data, cache and outputs (default: a temp folder)")
    parser.add_argument("--model", default="open_clip:ViT-B-32@random")
    parser.add_argument("--layer", default="blocks.6", help="the block whose grid-pooled tokens are used")
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--alpha-search", default="descend", choices=["descend", "grid"],
                        help="braincode fit's --alpha-search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help='where extraction and both fits run ("cpu" or "cuda")')
    parser.add_argument("--himalaya-backend", help='"torch", "torch_cuda", "numpy" or "none" (default: torch, or '
                        'torch_cuda with --device cuda)')
    parser.add_argument("--max-gap-voxels", type=int, default=2000, help="voxels whose exact CV gap is computed")
    parser.add_argument("--nsd", action="store_true", help="the whole-cortex ridge line instead")
    parser.add_argument("--features", type=int, default=512, help="features of the --nsd line")
    parser.add_argument("--extract-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--nsd-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.himalaya_backend = args.himalaya_backend or ("torch_cuda" if args.device == "cuda" else "torch")
    if args.extract_only:
        folder = Path(args.folder)
        designs(folder / "data", folder / "cache", args)
    elif args.nsd_child:
        nsd_child(Path(args.folder), args.features, args.seed)
    elif args.nsd:
        print(json.dumps(main_nsd(args)), flush=True)
    else:
        print(json.dumps(main_scale(args)), flush=True)


if __name__ == "__main__":
    main()
