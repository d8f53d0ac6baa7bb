"""Benchmark of the token readouts: ridge vs factorized vs attention routing, on synthetic data with a known truth.

    python bench/readouts.py                          # seeds 0 1 2, 600 train / 100 test images, a few min on 2 cores
    python bench/readouts.py --seeds 0 --n-train 300  # quick look
    python bench/readouts.py --scale                  # routing at real scale: seconds per epoch on CPU (see below)

For each seed: :func:`braincode.data.synthetic.make_synthetic` writes a subject (pRF voxels driven by contrast at
a fixed place, category voxels by their category anywhere in the image, non-responsive voxels); the patch tokens
of one block of a random-weight ViT (``open_clip:tiny-vit@random``, 7x7 patches of 128 features plus a class
token: random weights still give tokens that reflect local image content) are extracted once; three readouts
are fitted on the noisy training responses and scored on the test split against the *noiseless* responses
(Pearson r per voxel, then the mean per voxel kind and ROI family):

- ``ridge``: :class:`~braincode.encoding.RidgeEncoder` (per-voxel alpha by 5-fold CV) on the tokens pooled to a
  4x4 grid and z-scored, the design ``braincode fit`` uses by default;
- ``factorized``: :class:`~braincode.encoding.FactorizedReadout` at its defaults (softmax spatial map x feature
  weights, early stopping);
- ``routing``: :class:`~braincode.encoding.RoutingReadout`, the published architecture (zero target, query as a
  positional term, ReLU FFN, attention dropout, one query per ROI per hemisphere + "unknown", a vertex summing
  its ROIs' readouts) at the width of these tokens (d_model 128 = the token width, so no input projection as in
  the paper; 8 heads, FFN 256, dropout 0.1, lr 1e-3, early stopping; the paper: DINOv2 tokens, 768/16/1024).

Every token readout reports whether it stopped while still improving. Routing maps of the face queries are scored
on test images with one face: the share of attention inside the face's box against the box's share of the image.
Prints a markdown table (mean +- sd over seeds) and one JSON line; ``--out`` also gets an overlay PNG.

``--scale`` (issue: token readouts at scale) trains the routing readout at the published size (768/16/1024) on
10,000 images x 50 tokens (a class token and 7 x 7 patches) x 768 features memory-mapped from disk, with 40,000 vertices in 2 x 25 ROI queries, for
``--scale-steps`` optimiser steps, and prints the seconds per epoch extrapolated from them (one JSON line).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from braincode.data import load_algonauts
from braincode.data.synthetic import load_truth, make_synthetic
from braincode.encoding import FactorizedReadout, RidgeEncoder, RoutingReadout
from braincode.encoding.metrics import pearson_r
from braincode.encoding.routing_maps import box_share, routing_maps, save_overlays
from braincode.features import FeatureStore, get_extractor, pool_tokens

MODEL, LAYER = "open_clip:tiny-vit@random", "blocks.2"
FAMILIES = ["prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words"]
READOUTS = ("ridge", "factorized", "routing")

log = logging.getLogger("bench.readouts")


def tokens_of(root: Path, cache: Path) -> tuple[dict[str, np.ndarray], object]:
    """Patch tokens of the train and test images (cached in ``cache``)."""
    ds = load_algonauts(root, "subj01")
    extractor = get_extractor(MODEL, layers=[LAYER], device="cpu")
    store = FeatureStore(cache)
    tokens = {s: np.asarray(extractor.extract(ds[s].stimuli, store=store, progress=False)[LAYER]) for s in ("train", "test")}
    return tokens, extractor


def fit_ridge(train: np.ndarray, Y: np.ndarray, test: np.ndarray, grid: tuple[int, int], prefix: int) -> np.ndarray:
    """Ridge on tokens pooled to a 4x4 grid, features z-scored with training statistics."""
    pooled = [pool_tokens(t, num_prefix_tokens=prefix, grid=grid, mode="grid", out_grid=4) for t in (train, test)]
    mean, scale = pooled[0].mean(0), pooled[0].std(0) + 1e-6
    model = RidgeEncoder(alphas=np.logspace(-1, 6, 15), cv=5, device="cpu").fit((pooled[0] - mean) / scale, Y)
    return model.predict((pooled[1] - mean) / scale)


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> tuple[list[dict], dict]:
    """Fit the three readouts on one synthetic subject; per-readout score rows and the face-map shares."""
    root = make_synthetic(work / f"seed{seed}", n_train=args.n_train, n_test=args.n_test, seed=seed)
    ds, truth = load_algonauts(root, "subj01"), load_truth(root, "subj01")
    tokens, extractor = tokens_of(root, work / "cache")
    Y = ds["train"].responses.data
    prefix = extractor.num_prefix_tokens
    readouts = {
        "factorized": FactorizedReadout(num_prefix_tokens=prefix, random_state=seed, device="cpu"),
        "routing": RoutingReadout(families=FAMILIES, d_model=tokens["train"].shape[2], n_heads=8, d_ff=256, lr=1e-3,
                                  num_prefix_tokens=prefix, random_state=seed, device="cpu"),
    }
    rows, fitted = [], {}
    for name in READOUTS:
        start = time.perf_counter()
        if name == "ridge":
            pred = fit_ridge(tokens["train"], Y, tokens["test"], extractor.grid, prefix)
        else:
            fitted[name] = readouts[name].fit(tokens["train"], Y, ds.voxels)
            pred = fitted[name].predict(tokens["test"])
        seconds = time.perf_counter() - start
        r = pearson_r(truth.test_clean, pred)
        row = {"seed": seed, "readout": name, "fit_s": seconds,
               "prf": r[truth.voxels["kind"] == "prf"].mean(), "category": r[truth.voxels["kind"] == "category"].mean()}
        if name in fitted:
            row["epochs"] = fitted[name].history_.summary()["epochs_run"]
            row["stopped_improving"] = fitted[name].stopped_improving_
        for family in FAMILIES[1:]:
            row[family] = r[(ds.voxels[f"roi:{family}"] != "").to_numpy()].mean()
        rows.append(row)
        log.info("seed %d %s: %s", seed, name, {k: round(float(v), 3) for k, v in row.items() if k != "readout"})
    return rows, face_maps(fitted["routing"], tokens["test"], ds, truth, args.out if seed == args.seeds[0] else None)


def face_maps(readout: RoutingReadout, tokens: np.ndarray, ds, truth, out: Path | None) -> dict:
    """Share of the face queries' attention inside the face box, on test images holding exactly one object, a face."""
    objects = truth.objects[truth.objects["split"] == "test"]
    counts = objects.groupby("image").size()
    faces = objects[(objects["category"] == "face") & objects["image"].map(counts).eq(1)]
    names = [Path(p).name for p in ds["test"].stimuli.paths]
    index = np.array([names.index(i) for i in faces["image"]])
    half = faces["size"].to_numpy() / 2
    boxes = np.stack([faces["x"] - half, faces["y"] - half, faces["x"] + half, faces["y"] + half], 1)
    queries = [q for q in readout.query_labels_ if q.split("/")[1] in ("FFA-1", "OFA")]
    maps = routing_maps(readout, tokens[index], queries)
    shares = {q: float(box_share(maps.of(q), boxes).mean()) for q in queries}
    if out is not None:
        save_overlays(maps, ds["test"].stimuli.subset(index), out / "face_query_maps.png", boxes=boxes, max_images=6)
    area = np.clip(boxes[:, 2:], 0, 1) - np.clip(boxes[:, :2], 0, 1)
    return {"images": len(index), "box_area_share": float(area.prod(1).mean()), "attention_share": shares}


def scale_bench(args: argparse.Namespace, work: Path) -> dict:
    """Routing at the published size from memory-mapped tokens: seconds per epoch, extrapolated from a few steps."""
    from braincode.encoding.readouts_base import Rows

    n, n_tokens, width, n_vox = args.scale_images, 50, 768, args.scale_vertices
    rng = np.random.default_rng(0)
    paths = {"tokens": work / "scale_tokens.npy", "Y": work / "scale_Y.npy"}
    for name, shape in (("tokens", (n, n_tokens, width)), ("Y", (n, n_vox))):
        if not paths[name].is_file():
            out = np.lib.format.open_memmap(paths[name], mode="w+", dtype=np.float32, shape=shape)
            for start in range(0, n, 500):
                out[start:start + 500] = rng.standard_normal((min(500, n - start), *shape[1:]), dtype=np.float32)
            out.flush()
            del out
    tokens, Y = np.load(paths["tokens"], mmap_mode="r"), np.load(paths["Y"], mmap_mode="r")
    names = {"prf-visualrois": ["V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"], "floc-bodies": ["EBA", "FBA-1", "FBA-2",
             "mTL-bodies"], "floc-faces": ["OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"], "floc-places": ["OPA",
             "PPA", "RSC"], "floc-words": ["OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"]}
    voxels = pd.DataFrame({"hemisphere": np.repeat(["lh", "rh"], [n_vox // 2, n_vox - n_vox // 2])})
    family_of = rng.integers(0, len(names), n_vox)
    for f, (family, rois) in enumerate(names.items()):  # each vertex in one family's ROI, 20% in none
        inside = (family_of == f) & (rng.random(n_vox) > 0.2)
        voxels[f"roi:{family}"] = np.where(inside, np.array(rois)[rng.integers(0, len(rois), n_vox)], "")
    train, val = np.arange(int(0.9 * n)), np.arange(int(0.9 * n), n)
    steps, batch = args.scale_steps, 16
    sample = np.sort(rng.choice(train, steps * batch, replace=False))  # rows spread over the whole memory map
    val_sample = val[:64]
    readout = RoutingReadout(families=list(names), num_prefix_tokens=1, max_epochs=1, device="cpu")  # 768/16/1024
    start = time.perf_counter()
    readout.fit(Rows(tokens, sample), Rows(Y, sample), voxels, X_val=Rows(tokens, val_sample), Y_val=Y[val_sample])
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    readout.predict(Rows(tokens, val_sample))
    predict_s = time.perf_counter() - start
    step_s = (fit_s - predict_s) / steps
    epoch_s = step_s * -(-len(train) // batch) + predict_s * len(val) / len(val_sample)
    return {"bench": "readouts-scale", "images": n, "tokens": n_tokens, "features": width, "vertices": n_vox,
            "queries": len(readout.query_labels_), "sizes": "768/16/1024", "batch": batch, "threads": args.threads,
            "steps_timed": steps, "seconds_per_step": round(step_s, 3),
            "validation_seconds_per_image": round(predict_s / len(val_sample), 4),
            "seconds_per_epoch_extrapolated": round(epoch_s, 1), "tokens_memory_mapped": True}


def summarise(rows: list[dict]) -> tuple[pd.DataFrame, dict]:
    """Mean and sd over seeds per readout; the table as strings ``mean +- sd``."""
    frame = pd.DataFrame(rows)
    columns = ["prf", "category", *FAMILIES[1:], "fit_s"]
    frame = frame.drop(columns=["epochs", "stopped_improving"], errors="ignore")
    stats = frame.groupby("readout")[columns].agg(["mean", "std"]).reindex(list(READOUTS))
    table = pd.DataFrame({c: [f"{m:.3f} ± {0.0 if np.isnan(s) else s:.3f}" for m, s in stats[c].to_numpy()]
                          for c in columns}, index=stats.index)
    table["fit_s"] = [f"{m:.0f} ± {0.0 if np.isnan(s) else s:.0f}" for m, s in stats["fit_s"].to_numpy()]
    summary = {name: {c: [round(float(stats.loc[name, (c, "mean")]), 4),
                          round(float(np.nan_to_num(stats.loc[name, (c, "std")])), 4)] for c in columns}
               for name in READOUTS}
    return table, summary


def markdown(table: pd.DataFrame) -> str:
    """A pandas table as a GitHub markdown table (index first)."""
    header = [table.index.name or "", *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(table.index, table.to_numpy())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these sizes)")
    parser.add_argument("--work", type=Path, default=None, help="data and feature cache (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/readouts"), help="where the overlay PNG goes")
    parser.add_argument("--scale", action="store_true", help="time routing at real scale instead (see above)")
    parser.add_argument("--scale-images", type=int, default=10_000)
    parser.add_argument("--scale-vertices", type=int, default=40_000)
    parser.add_argument("--scale-steps", type=int, default=20, help="optimiser steps timed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.scale:  # ~3 GB of memory-mapped arrays: kept in --work, else removed afterwards
        with tempfile.TemporaryDirectory(prefix="bench-readouts-scale-") as tmp:
            result = scale_bench(args, args.work or Path(tmp))
        print(json.dumps(result))
        return result
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-readouts-"))
    rows, faces = [], []
    for seed in args.seeds:
        seed_rows, face = run_seed(seed, args, work)
        rows += seed_rows
        faces.append(face)
    table, summary = summarise(rows)
    print(f"\nTest r against the noiseless truth, mean ± sd over seeds {args.seeds} ({args.n_train} train images):\n")
    print(markdown(table))
    share = {q: float(np.mean([f["attention_share"][q] for f in faces])) for q in faces[0]["attention_share"]}
    area = float(np.mean([f["box_area_share"] for f in faces]))
    print(f"\nFace queries' attention inside the face box (test images with one face): "
          f"{', '.join(f'{q} {s:.2f}' for q, s in share.items())}; the box covers {area:.2f} of the image.")
    result = {
        "bench": "readouts", "model": MODEL, "layer": LAYER, "seeds": args.seeds, "n_train": args.n_train,
        "n_test": args.n_test, "threads": args.threads, "results": summary,
        "ratios": {
            "routing/ridge category r": round(summary["routing"]["category"][0] / summary["ridge"]["category"][0], 3),
            "factorized/ridge prf r": round(summary["factorized"]["prf"][0] / summary["ridge"]["prf"][0], 3),
        },
        "stopped_improving_runs": {name: int(sum(r.get("stopped_improving", False) for r in rows
                                                 if r["readout"] == name)) for name in READOUTS},
        "face_attention_share": share, "face_box_area_share": area,
        "per_seed": [{k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
