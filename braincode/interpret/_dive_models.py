"""Diffusion components for BrainDiVE: architecture configs written in code, and a loader for local checkpoints.

``"tiny@random"`` and ``"sd21-base@random"`` build a UNet, VAE and DPM-Solver++ scheduler with random weights
(no hub access): the tiny one for tests and CPU runs, the other with the exact architecture of Stable Diffusion
2.1-base (its cost does not depend on the weights). Anything else is a local folder in the diffusers layout
(``unet/``, ``vae/``, ``scheduler/``, optionally ``text_encoder/`` and ``tokenizer/``) or a hub id that is already
in the local cache; braincode never downloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel

from braincode.errors import ModelError

#: Noise schedule of Stable Diffusion 1.x/2.x (scheduler/scheduler_config.json of SD-2.1-base).
SD_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
}

#: Architectures by name: UNet config, VAE config, VAE scaling factor.
ARCHITECTURES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        "vae": {
            "sample_size": 32,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 4,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
            "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
            "norm_num_groups": 32,
            "scaling_factor": 0.18215,
        },
    },
    "sd21-base": {
        "unet": {
            "sample_size": 64,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            "cross_attention_dim": 1024,
            "attention_head_dim": (5, 10, 20, 20),
            "use_linear_projection": True,
            "norm_num_groups": 32,
        },
        "vae": {
            "sample_size": 512,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 4,
            "block_out_channels": (128, 256, 512, 512),
            "layers_per_block": 2,
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "norm_num_groups": 32,
            "scaling_factor": 0.18215,
        },
    },
}


@dataclass
class DiffusionParts:
    """The pieces a :class:`~braincode.interpret.dive.BrainDiVEPipeline` is built from."""

    unet: torch.nn.Module
    vae: AutoencoderKL
    scheduler: Any
    text_encoder: torch.nn.Module | None = None
    tokenizer: Any | None = None


def random_diffusion(name: str = "tiny", *, random_state: int = 0) -> DiffusionParts:
    """UNet, VAE and DPM-Solver++ scheduler of architecture ``name`` with random weights (same seed, same weights).

    Examples
    --------
    >>> parts = random_diffusion("tiny")
    >>> parts.unet.config.sample_size, type(parts.scheduler).__name__
    (16, 'DPMSolverMultistepScheduler')
    """
    if name not in ARCHITECTURES:
        raise ModelError(
            f"unknown diffusion architecture {name!r}",
            expected=f"one of {sorted(ARCHITECTURES)} (with @random) or a local diffusers folder",
            found=name,
        )
    arch = ARCHITECTURES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        unet = UNet2DConditionModel(**arch["unet"])
        vae = AutoencoderKL(**arch["vae"])
    return DiffusionParts(unet.eval(), vae.eval(), DPMSolverMultistepScheduler(**SD_SCHEDULE))


def load_diffusion(source: str, *, random_state: int = 0) -> DiffusionParts:
    """Diffusion parts from ``"<arch>@random"``, a local diffusers folder, or a hub id already in the local cache.

    The scheduler is always DPM-Solver++ (multistep) built from the checkpoint's own noise schedule, as in
    BrainDiVE. Text encoder and tokenizer are loaded when the folder has them (to embed the empty prompt).

    Raises
    ------
    ModelError
        When the checkpoint is not available offline, with the command that fetches it.
    """
    if source.endswith("@random"):
        return random_diffusion(source[: -len("@random")], random_state=random_state)
    kwargs = {"local_files_only": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **kwargs)
        scheduler = DPMSolverMultistepScheduler.from_pretrained(source, subfolder="scheduler", **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(
            "cannot load the diffusion model offline",
            path=source if Path(source).exists() else None,
            expected="a diffusers folder with unet/, vae/ and scheduler/, or a hub id in the local cache",
            found=f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
            fix=f"run `huggingface-cli download {source}` on a machine with internet, or pass tiny@random",
        ) from exc
    from transformers import AutoTokenizer, CLIPTextModel

    try:
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs).eval()
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
    except (OSError, ValueError):
        text_encoder = tokenizer = None
    return DiffusionParts(unet.eval(), vae.eval(), scheduler, text_encoder, tokenizer)
