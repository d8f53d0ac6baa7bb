"""Benchmark: per-voxel-alpha ridge with K-fold CV, braincode against himalaya and scikit-learn in one run.

Prints three JSON lines.

1. n=4000 samples, p=768 features, v=10000 voxels, 10 alphas (logspace -2..6), 5-fold CV, random data with a
   known linear signal whose strength varies over voxels. Times braincode ``RidgeEncoder``, himalaya ``RidgeCV``
   (numpy and torch backends, same folds, R^2 scoring) and scikit-learn ``RidgeCV(alpha_per_target=True)``
   (which selects alphas by efficient leave-one-out / GCV, not K-fold: its alphas are not comparable).
   braincode's time is the median of 3 fits (the peers, much slower, are timed once); ratios use it. The
   matmul speed is measured just before each braincode fit, and the flop-bound ratio is the median of the
   per-fit ratios (so a busy machine slows the fit and its bound alike).
   Reports ratios, the largest prediction difference to himalaya (relative to each voxel's prediction scale),
   the share of voxels whose alpha differs from himalaya's, and two flop-count lower bounds from the measured
   float32 matmul speed of this machine:

   - ``flop_bound_s``: the matmuls of the direct eigen-basis method, which any method that forms validation
     predictions must do: per fold ``U^T Y_train`` (2 n_train r v) and per fold and alpha the validation
     predictions (2 n_val r v), plus the refit (2 n p v + 2 p r v);
   - ``own_flop_bound_s``: the matmuls braincode actually does (it never forms validation predictions): per
     fold ``Xv^T Yv`` (2 n_val p v; their sum is ``X^T Y``), two ``V^T`` products (4 p r v) and one float64
     ``M E`` (2 r^2 v, timed at the float64 speed), plus the refit (4 p r v).

2. v=100000 voxels, braincode only, in a subprocess: time and peak resident memory (``ru_maxrss``).

3. Features outnumber samples (dual form): n=5000, p=6000, v=4000, 10 alphas, 5 folds. braincode once against
   himalaya ``RidgeCV`` (numpy and torch backends, or those of ``--backends``), same folds; the ratio is over the
   faster backend. Also the share of alphas that differ and, where they differ, the gap between the CV score of
   braincode's alpha and of himalaya's, both computed exactly in float64 on the same folds (by the direct
   method), and the largest relative prediction difference where they agree.

Run: ``BRAINCODE_PROGRESS=0 .venv/bin/python bench/ridge.py`` (``--quick`` for a small smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.model_selection import KFold

N, P, V, N_FOLDS = 4000, 768, 10_000, 5
WIDE = (5000, 6000, 4000)  # n, p, v of the features-outnumber-samples line
ALPHAS = np.logspace(-2, 6, 10)


def make_data(n: int, p: int, v: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train X, Y and test X (n // 4 rows), float32; the signal-to-noise ratio varies over voxels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n // 4, p), dtype=np.float32)
    Y = np.empty((n, v), dtype=np.float32)
    for start in range(0, v, 10_000):  # chunks keep peak memory near the size of Y
        cols = min(10_000, v - start)
        W = rng.standard_normal((p, cols), dtype=np.float32) / np.sqrt(p)
        snr = np.logspace(-2, 1, cols, dtype=np.float32)
        Y[:, start : start + cols] = (X[:n] @ W) * np.sqrt(snr) + rng.standard_normal(
            (n, cols), dtype=np.float32
        )
    return X[:n], Y, X[n:]


def matmul_speed(dtype: torch.dtype, repeats: int = 3) -> float:
    """Best flop/s of a (768 x 3200) @ (3200 x 10000) product on this machine."""
    a = torch.randn(P, 3200, dtype=dtype)
    b = torch.randn(3200, V, dtype=dtype)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * P * 3200 * V / best


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_braincode(X, Y, Xt, cv, repeats: int = 1):
    """Predictions, alphas, fit times and the matmul speeds (float32, float64) measured just before each fit.

    Measuring the speed next to each fit keeps the flop bound honest when other jobs share the machine.
    """
    from braincode.encoding import RidgeEncoder

    times, speeds = [], []
    for _ in range(repeats):
        speeds.append((matmul_speed(torch.float32), matmul_speed(torch.float64)))
        model = RidgeEncoder(alphas=ALPHAS, cv=cv, device="cpu")
        model, seconds = timed(lambda m=model: m.fit(X, Y))
        times.append(seconds)
    return model.predict(Xt), model.best_alphas_, times, speeds


def run_himalaya(X, Y, Xt, cv, backend: str):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score

    be = set_backend(backend)
    model = RidgeCV(alphas=ALPHAS, cv=cv, fit_intercept=True, solver_params={"score_func": r2_score})
    model, seconds = timed(lambda: model.fit(X, Y))
    pred = be.to_numpy(model.predict(Xt))
    alphas = be.to_numpy(model.best_alphas_)
    set_backend("numpy")
    return pred, alphas, seconds


def run_sklearn(X, Y, Xt):
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=ALPHAS, alpha_per_target=True)
    model, seconds = timed(lambda: model.fit(X, Y))
    return model.predict(Xt), seconds


def flop_counts(n: int, p: int, v: int, n_folds: int, n_alphas: int) -> tuple[float, float, float]:
    """(direct-method float32 flops, braincode float32 flops, braincode float64 flops)."""
    r = min(p, n - n // n_folds)
    n_val, n_train = n // n_folds, n - n // n_folds
    refit = 2 * n * p * v + 2 * p * r * v
    direct = n_folds * (2 * n_train * r * v + n_alphas * 2 * n_val * r * v) + refit
    own32 = n_folds * (2 * n_val * p * v + 4 * p * r * v) + 4 * p * r * v  # X^T Y = sum of the folds' Xv^T Yv
    own64 = n_folds * 2 * r * r * v
    return direct, own32, own64


def relative_prediction_diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per voxel (column): max |a - b| / max |b|."""
    scale = np.abs(b).max(0)
    return np.abs(a - b).max(0) / np.where(scale > 0, scale, 1.0)


def relative_prediction_diff(a: np.ndarray, b: np.ndarray, same: np.ndarray) -> float:
    """Largest |a - b| / (voxel's max |b|) over the voxels where both chose the same alpha (ties aside)."""
    return float(relative_prediction_diffs(a, b)[same].max()) if same.any() else float("nan")


def alphas_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ~np.isclose(a, b, rtol=1e-5)  # himalaya stores alphas as exp(-log(alpha))


def _header(bench: str, n: int, p: int, v: int) -> dict:
    """The fields every line of this benchmark starts with."""
    return {"bench": bench, "n": n, "p": p, "v": v, "alphas": len(ALPHAS), "folds": N_FOLDS,
            "threads": torch.get_num_threads(), "load_avg_1min": round(os.getloadavg()[0], 2)}


def main_comparison(quick: bool) -> dict:
    n, p, v = (800, 96, 1000) if quick else (N, P, V)
    X, Y, Xt = make_data(n, p, v)
    cv = KFold(N_FOLDS)
    pred_bc, alphas_bc, times, speeds = run_braincode(X, Y, Xt, cv, repeats=3)
    pred_hn, alphas_hn, t_hn = run_himalaya(X, Y, Xt, cv, "numpy")
    pred_ht, alphas_ht, t_ht = run_himalaya(X, Y, Xt, cv, "torch")
    _, t_sk = run_sklearn(X, Y, Xt)
    direct, own32, own64 = flop_counts(n, p, v, N_FOLDS, len(ALPHAS))
    bounds = [direct / s32 for s32, _ in speeds]
    own_bounds = [own32 / s32 + own64 / s64 for s32, s64 in speeds]
    t_bc, t_h = float(np.median(times)), min(t_hn, t_ht)
    differ_n, differ_t = alphas_differ(alphas_bc, alphas_hn), alphas_differ(alphas_bc, alphas_ht)
    return {
        **_header("ridge_cv", n, p, v),
        "braincode_s": round(t_bc, 3),
        "braincode_runs_s": [round(t, 3) for t in times],
        "himalaya_numpy_s": round(t_hn, 3),
        "himalaya_torch_s": round(t_ht, 3),
        "sklearn_gcv_s": round(t_sk, 3),
        "ratio_himalaya_best_over_braincode": round(t_h / t_bc, 2),
        "ratio_sklearn_over_braincode": round(t_sk / t_bc, 2),
        "matmul_gflops_f32_runs": [round(s32 / 1e9, 1) for s32, _ in speeds],
        "matmul_gflops_f64_runs": [round(s64 / 1e9, 1) for _, s64 in speeds],
        "flop_bound_s": round(float(np.median(bounds)), 3),
        "ratio_braincode_over_flop_bound": round(float(np.median(np.divide(times, bounds))), 3),
        "ratio_braincode_over_flop_bound_runs": [round(t / b, 3) for t, b in zip(times, bounds)],
        "own_flop_bound_s": round(float(np.median(own_bounds)), 3),
        "ratio_braincode_over_own_flop_bound": round(float(np.median(np.divide(times, own_bounds))), 3),
        "max_rel_pred_diff_vs_himalaya_numpy": relative_prediction_diff(pred_bc, pred_hn, ~differ_n),
        "max_rel_pred_diff_vs_himalaya_torch": relative_prediction_diff(pred_bc, pred_ht, ~differ_t),
        "share_alpha_differs_vs_himalaya_numpy": float(differ_n.mean()),
        "share_alpha_differs_vs_himalaya_torch": float(differ_t.mean()),
        "share_alpha_differs_himalaya_numpy_vs_torch": float(alphas_differ(alphas_hn, alphas_ht).mean()),
        "note": "sklearn RidgeCV selects alphas by leave-one-out (GCV), not 5-fold CV; prediction differences "
        "are over the voxels whose alphas agree",
    }


def child_large(v: int) -> None:
    """Fit braincode on v voxels and print time and peak memory (run in a fresh process)."""
    X, Y, Xt = make_data(N, P, v, seed=1)
    data_gb = (X.nbytes + Y.nbytes + Xt.nbytes) / 2**30
    _, _, (seconds,), _ = run_braincode(X, Y, Xt, KFold(N_FOLDS))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    print(json.dumps({"seconds": seconds, "peak_gb": peak_gb, "data_gb": data_gb}))


def main_large(quick: bool) -> dict:
    v = 20_000 if quick else 100_000
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(v)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "BRAINCODE_PROGRESS": "0"},
    )
    child = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        **_header("ridge_cv_large", N, P, v),
        "braincode_s": round(child["seconds"], 3),
        "peak_rss_gb": round(child["peak_gb"], 3),
        "input_data_gb": round(child["data_gb"], 3),
    }


def exact_cv_scores(X, Y, alphas_per_voxel: np.ndarray, cv) -> np.ndarray:
    """Mean over folds of the validation R^2 of each voxel's alpha, solved directly in float64 (dual form)."""
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    out = torch.zeros(Y.shape[1], dtype=torch.float64)
    splits = list(cv.split(X))
    for train, val in splits:
        Xt, Yt = X[train], Y[train]
        mx, my = Xt.mean(0), Yt.mean(0)
        Xt, Yt, Xv = Xt - mx, Yt - my, X[val] - mx
        lam, U = torch.linalg.eigh(Xt @ Xt.T)
        UtY, KvU = U.T @ Yt, (Xv @ Xt.T) @ U
        for a in np.unique(alphas_per_voxel):
            cols = torch.as_tensor(np.flatnonzero(alphas_per_voxel == a))
            pred = KvU @ (UtY[:, cols] / (lam[:, None] + float(a))) + my[cols]
            Yv = Y[val][:, cols]
            out[cols] += 1 - ((Yv - pred) ** 2).sum(0) / ((Yv - Yv.mean(0)) ** 2).sum(0)
    return (out / len(splits)).numpy()


def exact_predictions(X, Y, X_test, alphas_per_voxel: np.ndarray) -> np.ndarray:
    """Test predictions of ridge with an intercept refit on all of ``(X, Y)`` at each voxel's alpha, solved directly
    in float64 (dual form, one Cholesky factor per alpha): the answer both tools approximate."""
    X, Y, X_test = (torch.as_tensor(a, dtype=torch.float64) for a in (X, Y, X_test))
    mx, my = X.mean(0), Y.mean(0)
    Xc = X - mx
    K, K_test = Xc @ Xc.T, (X_test - mx) @ Xc.T
    pred = torch.empty(len(X_test), Y.shape[1], dtype=torch.float64)
    for a in np.unique(alphas_per_voxel):
        cols = torch.as_tensor(np.flatnonzero(alphas_per_voxel == a))
        factor = torch.linalg.cholesky(K + float(a) * torch.eye(len(K), dtype=torch.float64))
        pred[:, cols] = K_test @ torch.cholesky_solve(Y[:, cols] - my[cols], factor) + my[cols]
    return pred.numpy()


def main_wide(quick: bool, backends: list[str]) -> dict:
    n, p, v = (1000, 1200, 800) if quick else WIDE
    X, Y, Xt = make_data(n, p, v, seed=2)
    cv = KFold(N_FOLDS)
    speeds = (matmul_speed(torch.float32), matmul_speed(torch.float64))
    pred_bc, alphas_bc, (t_bc,), _ = run_braincode(X, Y, Xt, cv)
    peers = {b: run_himalaya(X, Y, Xt, cv, b) for b in backends}
    best = min(peers, key=lambda b: peers[b][2])
    pred_h, alphas_h, t_h = peers[best]
    differ = alphas_differ(alphas_bc, alphas_h)
    gap = float("nan")
    if differ.any():
        cols = np.flatnonzero(differ)
        ours = exact_cv_scores(X, Y[:, cols], alphas_bc[cols], cv)
        theirs = exact_cv_scores(X, Y[:, cols], np.asarray(alphas_h, dtype=np.float64)[cols], cv)
        gap = float(np.max(theirs - ours))
    return {
        **_header("ridge_cv_wide", n, p, v),
        "matmul_gflops_f32": round(speeds[0] / 1e9, 1),
        "matmul_gflops_f64": round(speeds[1] / 1e9, 1),
        "braincode_s": round(t_bc, 3),
        **{f"himalaya_{b}_s": round(peers[b][2], 3) for b in backends},
        "himalaya_faster_backend": best,
        "ratio_himalaya_best_over_braincode": round(t_h / t_bc, 2),
        "share_alpha_differs": float(differ.mean()),
        "max_exact_cv_r2_gap_where_alphas_differ": gap,
        "max_rel_pred_diff_where_alphas_agree": relative_prediction_diff(pred_bc, pred_h, ~differ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["compare", "large", "wide"], help="run one of the three lines")
    parser.add_argument("--backends", default="numpy,torch", help="himalaya backends of the wide line")
    args = parser.parse_args()
    if args.child:
        child_large(args.child)
        return
    if args.only in (None, "compare"):
        print(json.dumps(main_comparison(args.quick)), flush=True)
    if args.only in (None, "large"):
        print(json.dumps(main_large(args.quick)), flush=True)
    if args.only in (None, "wide"):
        print(json.dumps(main_wide(args.quick, args.backends.split(","))), flush=True)


if __name__ == "__main__":
    main()
