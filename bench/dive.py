"""Benchmark: BrainDiVE seconds per image and peak memory, braincode against the reference's cost model.

Prints one JSON line. For each batch size, braincode's :class:`BrainDiVEPipeline` (one UNet pass per step with
the graph kept, seeds batched, self-attention guidance 0.75 as published: one more UNet pass) is timed over a full
run; the reference cost model is the same step (with the same SAG pass) preceded by the extra no-grad UNet pass
that the reference code makes every step, one image at a time. Also reported: the
predicted objective of guided vs unguided images for the same seeds (guidance must raise it), and the FLOPs of
one guided step counted on the meta device (so a CPU run still tells what a GPU has to do).

- ``--config sd21-base`` (default on CUDA): the architecture of Stable Diffusion 2.1-base with random weights
  (UNet 865M parameters, VAE 84M), 512x512, DPM-Solver++ 50 steps, fp16 + channels-last, an encoder of
  ``open_clip:ViT-B-16@random`` pooled embeddings -> 20,000 voxels. The cost does not depend on the weights.
- ``--config tiny`` (default on CPU): the tiny test architecture (32x32 images), 10 steps, fp32, the tiny ViT.

Run: ``BRAINCODE_PROGRESS=0 .venv/bin/python bench/dive.py`` (add ``--device cuda`` on a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import pandas as pd
import torch

from braincode.devices import resolve_device
from braincode.encoding.torch_encoder import LinearReadout, TorchEncoder
from braincode.features import get_extractor
from braincode.features.design import FeatureSpec
from braincode.interpret._dive_models import ARCHITECTURES, random_diffusion
from braincode.interpret.dive import BrainDiVEPipeline, Objective

PRESETS = {
    "tiny": {"encoder": "open_clip:tiny-vit@random", "voxels": 2000, "steps": 10, "size": 32},
    "sd21-base": {"encoder": "open_clip:ViT-B-16@random", "voxels": 20000, "steps": 50, "size": 512},
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ReferenceCost(BrainDiVEPipeline):
    """The reference's per-step work: a no-grad UNet pass for the update (and SAG), then the guided pass for the
    gradient."""

    def _guided_step(self, x, t, cond, objective, scale, sag_scale=0.0):
        with torch.no_grad():
            self.unet(self.scheduler.scale_model_input(x, t).to(self.unet.dtype), t, encoder_hidden_states=cond)
        return super()._guided_step(x, t, cond, objective, scale, sag_scale)


def build(config: str, device: torch.device, dtype: torch.dtype, cls=BrainDiVEPipeline) -> BrainDiVEPipeline:
    """A pipeline of ``config`` with random weights and a random linear readout on pooled image embeddings."""
    preset = PRESETS[config]
    extractor = get_extractor(preset["encoder"], layers=["pooled"], device=str(device))
    n_features = int(extractor.model.visual.output_dim)
    weights = np.random.default_rng(0).normal(size=(preset["voxels"], n_features)) / np.sqrt(n_features)
    voxels = pd.DataFrame({"hemisphere": "lh", "vertex": np.arange(preset["voxels"]),
                           "roi:floc-faces": np.where(np.arange(preset["voxels"]) < 500, "FFA-1", "")})
    encoder = TorchEncoder(extractor, FeatureSpec(preset["encoder"]), LinearReadout(weights, np.zeros(len(weights))),
                           voxels=voxels)
    parts = random_diffusion(config)
    pipe = cls(parts.unet, parts.vae, parts.scheduler, encoder)
    pipe.to(device)
    if dtype != torch.float32:
        pipe.set_precision(dtype, channels_last=device.type == "cuda")
    return pipe


def tflop_per_step(config: str, size: int) -> dict[str, float]:
    """FLOPs of one image's UNet forward and of its guided step (UNet + VAE decode, forward and backward to the
    latents; the encoder left out), counted on the meta device: nothing is computed, so this runs anywhere."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    arch = ARCHITECTURES[config]
    factor = 2 ** (len(arch["vae"]["block_out_channels"]) - 1)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**arch["unet"]).requires_grad_(False)
        vae = AutoencoderKL(**arch["vae"]).requires_grad_(False)
        x = torch.randn(1, 4, size // factor, size // factor, requires_grad=True)
        cond = torch.zeros(1, 77, arch["unet"]["cross_attention_dim"])
    t = torch.tensor(500, device="meta")
    with FlopCounterMode(display=False) as forward:
        unet(x.detach(), t, encoder_hidden_states=cond)
    with FlopCounterMode(display=False) as guided:  # .backward(): FlopCounterMode refuses autograd.grad on leaves
        vae.decode(x - unet(x, t, encoder_hidden_states=cond).sample).sample.mean().backward()
    return {"unet_forward_tflop": round(forward.get_total_flops() / 1e12, 3),
            "guided_step_tflop": round(guided.get_total_flops() / 1e12, 3)}


def timed(pipe: BrainDiVEPipeline, objective: Objective, seeds: list[int], steps: int, size: int, scale: float):
    """(seconds for the run, peak memory in GiB, output)."""
    device = pipe.unet.device
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = pipe(objective, seeds, num_inference_steps=steps, guidance_scale=scale, height=size, width=size,
               output_type="np", progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (Linux: KiB)
    return time.perf_counter() - start, peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--config", choices=sorted(PRESETS), help="default: sd21-base on CUDA, tiny on CPU")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated seeds per batch")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--scale", type=float, default=130.0)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference cost model")
    args = parser.parse_args()

    device = resolve_device(args.device)
    config = args.config or ("sd21-base" if device.type == "cuda" else "tiny")
    preset = PRESETS[config]
    steps, size = args.steps or preset["steps"], args.size or preset["size"]
    dtype = DTYPES[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    torch.manual_seed(0)
    pipe = build(config, device, dtype)
    objective = Objective("FFA-1", tuple(range(500)))
    timed(pipe, objective, [0], 2, size, args.scale)  # warm-up: kernels, allocator
    runs = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        seconds, peak, guided = timed(pipe, objective, list(range(batch)), steps, size, args.scale)
        runs.append({"batch": batch, "s_per_image": round(seconds / batch, 3), "peak_mem_gib": round(peak, 2),
                     "guided_objective": round(float(guided.scores.mean()), 4)})
    _, _, plain = timed(pipe, objective, list(range(runs[-1]["batch"])), steps, size, 0.0)
    result = {
        "bench": "dive", "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()
        or "cpu", "config": config, "steps": steps, "size": size, "dtype": str(dtype).replace("torch.", ""),
        "scale": args.scale, "runs": runs, "unguided_objective": round(float(plain.scores.mean()), 4),
        **tflop_per_step(config, size),
    }
    if not args.no_reference:
        del pipe
        reference = build(config, device, dtype, cls=ReferenceCost)
        timed(reference, objective, [0], 2, size, args.scale)
        seconds, peak, _ = timed(reference, objective, [0], steps, size, args.scale)
        best = min(r["s_per_image"] for r in runs)
        result.update(reference_s_per_image=round(seconds, 3), reference_peak_mem_gib=round(peak, 2),
                      speedup_vs_reference=round(seconds / best, 2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
