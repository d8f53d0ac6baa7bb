"""``braincode synthesize``: BrainDiVE images that drive an ROI, from a fitted encoder.

::

    braincode synthesize --fit OUT --roi FFA-1 [--suppress PPA] --n 16 --out DIR \\
        [--diffusion stabilityai/stable-diffusion-2-1-base] [--data ROOT --subject subj01]

``--guide clip-linear`` (default, as published): a linear map on the L2-normalised CLIP image embedding
(``OUT/scuba_encoder/``, shared with ``braincode caption``; fitted there by the BrainSCUBA recipe from
``--data``/``--subject`` with ``--model``, default CLIP ViT-B/16 laion2b), read through a bilinear resize to 224 and
CLIP normalisation. ``--guide fit``: the encoder of ``braincode fit`` in ``OUT`` (fitted there when missing, with
the model and layers of ``OUT/summary.json`` or ``--model``/``--layer``); the published scale is not calibrated for
it. Self-attention guidance (``--sag``, 0.75) runs at every step. Images go to ``DIR/<objective>/seed-XXXXXXXX.png``
with a JSON sidecar each; re-running resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from braincode.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DIFFUSION = "stabilityai/stable-diffusion-2-1-base"
#: BrainDiVE's guiding CLIP (ViT-B/16 trained on LAION-2B).
DEFAULT_CLIP = "open_clip:ViT-B-16@laion2b_s34b_b88k"


def _encoder_config(args: argparse.Namespace):
    """Model and layers of the encoder to fit: ``--model``/``--layer``, else those of ``OUT/summary.json``."""
    from braincode.features.design import FeatureSpec

    summary = args.fit / "summary.json"
    info = json.loads(summary.read_text()) if summary.is_file() else {}
    if info.get("text_model"):
        raise ConfigError(
            "this fit used text features, which an image cannot be differentiated through",
            path=summary,
            expected="a fit on image features only",
            found=f"text model {info['text_model']}",
            fix="pass a new --fit folder and --model/--layer to fit an image-only encoder there",
        )
    model = args.model or info.get("model")
    if model is None:
        raise ConfigError("no encoder model to fit", path=args.fit, expected="--model or OUT/summary.json",
                          fix="pass --model, e.g. open_clip:ViT-B-32@openai")
    return FeatureSpec(model, tuple(args.layer or info.get("layers") or ["pooled"]), args.pool, args.grid)


def _clip_guide(args: argparse.Namespace, device: str):
    """BrainDiVE's guide: the linear CLIP encoder in ``--fit``/scuba_encoder, fitted there when missing."""
    from braincode.interpret.dive_encoder import ClipLinearGuide
    from braincode.interpret.scuba_encoder import Recipe, fit_encoder_on_images, load_encoder

    folder = args.fit / "scuba_encoder"
    if (folder / "config.json").is_file():
        encoder = load_encoder(folder)
        return ClipLinearGuide.from_encoder(encoder, device=device), encoder.heldout_ids
    if args.data is None:
        raise ConfigError("no linear CLIP encoder in the --fit folder", path=folder,
                          fix="pass --data ROOT --subject S to fit one there, or --guide fit")
    from braincode.data import load_algonauts

    train = load_algonauts(args.data, args.subject)["train"]
    encoder = fit_encoder_on_images(train.stimuli, train.responses.data, train.responses.voxels,
                                    args.model or DEFAULT_CLIP, holdout=args.holdout,
                                    recipe=Recipe(epochs=args.encoder_epochs), device=device)
    encoder.save(folder)
    log.info("fitted the linear CLIP encoder (%s) on %d images into %s", encoder.model_id, len(encoder.train_ids),
             folder)
    return ClipLinearGuide.from_encoder(encoder, device=device), encoder.heldout_ids


def _encoder(args: argparse.Namespace, device: str):
    """The encoder saved in ``--fit`` (fitted and saved there first when missing) and the ids of the training
    images it never saw (none for ``--guide fit``)."""
    if args.guide == "clip-linear":
        return _clip_guide(args, device)
    from braincode.encoding.torch_encoder import CONFIG, TorchEncoder

    if (args.fit / CONFIG).is_file() or args.data is None:
        return TorchEncoder.load(args.fit, device=device), ()
    from braincode.data import load_subject
    from braincode.features import FeatureStore
    from braincode.pipeline.tasks import fit_image_encoder

    spec = _encoder_config(args)
    dataset = load_subject(args.data, args.subject)
    store = FeatureStore(args.cache) if args.cache else None
    encoder = fit_image_encoder(spec, dataset, store=store, cv=args.cv, device=device)
    encoder.save(args.fit)
    log.info("fitted the encoder (%s, %s) on %d images into %s", spec.model_id, ", ".join(spec.layers),
             len(dataset["train"].stimuli), args.fit)
    return encoder, ()


def _dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def run(args: argparse.Namespace) -> int:
    """Run ``braincode synthesize``; returns the exit status."""
    import numpy as np

    from braincode.interpret._dive_models import load_diffusion
    from braincode.interpret.dive import BrainDiVEPipeline
    from braincode.interpret.dive_objectives import roi_objective
    from braincode.interpret.dive_runs import SampleSettings, synthesize

    if args.n < 1 or args.batch_size < 1:
        raise ConfigError("--n and --batch-size must be at least 1", found=f"{args.n}, {args.batch_size}")
    encoder, heldout = _encoder(args, args.device)
    if encoder.voxels is None:
        raise ConfigError("the encoder has no voxel table, so ROIs cannot be found", path=args.fit,
                          expected="voxels.csv beside encoder.json", fix="save the encoder with voxels=...")
    localizer = np.load(args.localizer_t) if args.localizer_t else None
    objective = roi_objective(encoder.voxels, args.roi, suppress=args.suppress, suppress_weight=args.suppress_weight,
                              localizer_t=localizer, t_threshold=args.t_threshold)
    parts = load_diffusion(args.diffusion)
    pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, encoder, parts.text_encoder, parts.tokenizer)
    pipe.to(encoder.device)
    dtype = _dtype(args.dtype, encoder.device)
    if dtype != pipe.unet.dtype:
        pipe.set_precision(dtype, channels_last=encoder.device.type == "cuda")
    settings = SampleSettings(args.steps, args.scale, args.sag, args.schedule, args.size, args.size)
    out = args.out / objective.name
    seeds = list(range(args.seed_start, args.seed_start + args.n))
    paths = synthesize(pipe, objective, seeds, out, encoder.voxels, settings=settings, batch_size=args.batch_size)
    values = [json.loads(p.with_suffix(".json").read_text())["objective_value"] for p in paths]
    print(f"wrote {len(paths)} images to {out} ({objective.name}: {len(objective.target)} target voxels"
          + (f", {len(objective.suppress)} suppressed" if objective.suppress else "") + ")")
    print(f"predicted objective: mean {np.mean(values):.3f}, min {np.min(values):.3f}, max {np.max(values):.3f}")
    if heldout and args.data is not None:
        _natural_baseline(args, encoder, objective, heldout, out, float(np.mean(values)))
    return 0


def _natural_baseline(args, encoder, objective, heldout, out: Path, synthesized: float) -> None:
    """Compare with the objective on the training images the encoder never saw (``natural_baseline.json``)."""
    from braincode.atomic import atomic_write
    from braincode.data import load_algonauts
    from braincode.data.core import Stimuli
    from braincode.interpret.dive_runs import natural_baseline

    train = load_algonauts(args.data, args.subject)["train"].stimuli
    keep = [i for i, s in enumerate(train.ids) if s in set(heldout)]
    held = Stimuli(ids=[train.ids[i] for i in keep], paths=[train.paths[i] for i in keep])
    base = natural_baseline(encoder, objective, held, split="validation (held out from the encoder)")
    base.update(synthesized_mean=synthesized, beats_natural_mean=synthesized > base["mean"],
                beats_natural_p90=synthesized > base["p90"], note="predicted by the guiding encoder")
    atomic_write(out / "natural_baseline.json", lambda p: p.write_text(json.dumps(base, indent=2)))
    print(f"held-out natural images ({base['n_images']}): mean {base['mean']:.3f}, 90th percentile "
          f"{base['p90']:.3f}; synthesized mean {synthesized:.3f}"
          + ("" if base["beats_natural_mean"] else " (does NOT beat the natural mean)"))


def register(subparsers) -> None:
    """Add ``synthesize`` to the ``braincode`` command line."""
    p = subparsers.add_parser("synthesize", help="BrainDiVE: images that drive an ROI, by brain-guided diffusion")
    p.add_argument("--fit", type=Path, required=True,
                   help="folder with the fitted encoder; fitted there when missing (needs --data)")
    p.add_argument("--guide", default="clip-linear", choices=["clip-linear", "fit"],
                   help="clip-linear: linear on the L2-normalised CLIP embedding (published); fit: braincode fit's")
    p.add_argument("--roi", required=True, help="ROI to drive: a label (FFA-1), a prefix (FFA) or family:label")
    p.add_argument("--suppress", help="ROI whose predicted activation is pushed down at the same time")
    p.add_argument("--suppress-weight", type=float, default=1.0)
    p.add_argument("--n", type=int, default=16, help="number of images (seeds seed-start .. seed-start+n-1)")
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="images go to OUT/<objective>/")
    p.add_argument("--diffusion", default=DEFAULT_DIFFUSION,
                   help="diffusers folder or cached hub id; tiny@random or sd21-base@random for random weights")
    p.add_argument("--steps", type=int, default=50, help="DPM-Solver++ steps")
    p.add_argument("--scale", type=float, default=130.0, help="brain-guidance scale (BrainDiVE: 130)")
    p.add_argument("--sag", type=float, default=0.75, help="self-attention guidance scale (BrainDiVE: 0.75; 0: off)")
    p.add_argument("--localizer-t", type=Path,
                   help=".npy of one localizer t value per voxel: ROI voxels with t > --t-threshold are kept")
    p.add_argument("--t-threshold", type=float, default=2.0)
    p.add_argument("--schedule", default="constant", choices=["constant", "linear", "cosine"])
    p.add_argument("--size", type=int, help="image side in pixels (default: the model's, 512 for SD-2.1-base)")
    p.add_argument("--batch-size", type=int, default=4, help="seeds per batch")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="UNet/VAE precision (auto: fp16 on GPU, fp32 on CPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data", type=Path, help="dataset root, to fit a missing encoder")
    p.add_argument("--subject", help="e.g. subj01 (with --data)")
    p.add_argument("--model", help=f"model id of an encoder to fit (clip-linear: default {DEFAULT_CLIP}; fit: that "
                   "of OUT/summary.json)")
    p.add_argument("--holdout", type=float, default=0.1, help="clip-linear: training images the encoder never sees")
    p.add_argument("--encoder-epochs", type=int, default=100, help="clip-linear: AdamW epochs (paper: 100)")
    p.add_argument("--layer", action="append", help="layer of an encoder to fit (repeatable)")
    p.add_argument("--pool", default="grid", choices=["grid", "mean", "cls"])
    p.add_argument("--grid", type=int, default=4)
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--cache", type=Path, help="feature cache folder")
    p.set_defaults(func=run)
