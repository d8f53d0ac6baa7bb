"""BrainDiVE: images synthesised by a latent diffusion model guided by the gradient of a brain encoder.

Luo et al., "Brain Diffusion for Visual Exploration" (NeurIPS 2023). At every denoising step the UNet's noise
estimate is pushed along the gradient of the encoder's predicted activation of a set of voxels:

    x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    image  = clamp(VAE.decode(sqrt(1 - abar) x0_hat + (1 - sqrt(1 - abar)) x_t) / 2 + 1/2, 0, 1)
    eps   <- eps + sag (eps - eps(degraded x_t)) - sqrt(1 - abar) * scale * grad_{x_t} objective(encoder(image))

Self-attention guidance (SAG, Hong et al. 2023; diffusers' ``StableDiffusionSAGPipeline`` logic, as in the
authors' pipeline): the UNet's mid-block self-attention map marks the salient latent regions, which are blurred in
the predicted x0, re-noised to level t and run through the UNet again; ``sag_scale`` (0.75 in BrainDiVE) weighs the
difference. ``sag_scale=0`` skips it and gives the brain-only path exactly.

The published setting is SD-2.1-base, DPM-Solver++ with 50 steps at 512x512, the empty prompt, no
classifier-free guidance, SAG 0.75 and a brain-guidance scale of 130 with a linear encoder on L2-normalised CLIP
embeddings (:class:`braincode.interpret.dive_encoder.ClipLinearGuide`: bilinear resize to 224, CLIP
normalisation). Unlike the reference code, the UNet runs once per step for the brain gradient (its output with the
graph kept serves both the update and the gradient), seeds are batched, and each seed's starting noise is drawn on
its own generator so that an image depends on its seed only, not on the batch it ran in.

Examples
--------
>>> import numpy as np, pandas as pd, torch
>>> from braincode.interpret._dive_models import random_diffusion
>>> from braincode.interpret.dive_objectives import roi_objective
>>> parts = random_diffusion("tiny")
>>> voxels = pd.DataFrame({"hemisphere": ["lh"] * 4, "vertex": range(4), "roi:floc-faces": ["FFA-1", "FFA-1", "", ""]})
>>> encoder = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 4))
>>> pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, encoder)
>>> out = pipe(roi_objective(voxels, "FFA-1"), seeds=[0, 1], num_inference_steps=3, progress=False)  # SAG 0.75
>>> len(out.images), out.predictions.shape
(2, (2, 4))
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from braincode.errors import ConfigError
from braincode.interpret.dive_objectives import Objective, score
from braincode.progress import progress as progress_bar

log = logging.getLogger(__name__)

#: Guidance-scale schedules over the denoising steps (fraction ``f`` of the run done, from 0 to 1).
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda f: 1.0,
    "linear": lambda f: 1.0 - f,
    "cosine": lambda f: 0.5 * (1.0 + math.cos(math.pi * f)),
}


# ------------------------------------------------------------------------------------------------------- pipeline
class _EncoderModule(torch.nn.Module):
    """Gives any image -> voxels callable the ``device``/``dtype`` that diffusers asks of pipeline components."""

    def __init__(self, encoder: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def device(self) -> torch.device:
        return next(self.parameters(), torch.empty(0)).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters(), torch.empty(0)).dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)


@dataclass
class BrainDiVEOutput(BaseOutput):
    """What :class:`BrainDiVEPipeline` returns.

    Attributes
    ----------
    images : list of PIL images, or ndarray (n, H, W, 3) in [0, 1] for ``output_type="np"``
        Quantised to 8 bits, exactly what would be saved as PNG.
    predictions : ndarray of shape (n, n_voxels)
        The encoder's prediction for each final (quantised) image.
    scores : ndarray of shape (n,)
        The objective on each final image (NaN when there is no objective).
    seeds : list of int
    """

    images: list | np.ndarray
    predictions: np.ndarray
    scores: np.ndarray
    seeds: list = field(default_factory=list)


class BrainDiVEPipeline(DiffusionPipeline):
    """Diffusion sampling guided by a brain encoder's gradient (BrainDiVE), for any UNet, VAE and scheduler.

    Parameters
    ----------
    unet : UNet2DConditionModel or UNet2DModel
        Predicts ``epsilon`` or ``v`` (the scheduler's ``prediction_type``).
    vae : AutoencoderKL
        Decodes latents to images in [-1, 1].
    scheduler : diffusers scheduler
        A variance-preserving one (DPM-Solver++, DDIM, UniPC, ...: ``init_noise_sigma == 1``).
    brain_encoder : nn.Module or callable
        Differentiable map from images (n, 3, H, W) in [0, 1] to predicted responses (n, n_voxels); it does its
        own resizing and normalisation (see :class:`braincode.encoding.torch_encoder.TorchEncoder`).
    text_encoder, tokenizer : optional
        When given, the empty prompt is embedded with them; otherwise the conditioning is zeros.

    Examples
    --------
    See the module docstring.
    """

    model_cpu_offload_seq = "unet->vae->brain_encoder"
    _optional_components: ClassVar[list[str]] = ["text_encoder", "tokenizer"]

    def __init__(self, unet, vae, scheduler, brain_encoder, text_encoder=None, tokenizer=None) -> None:
        super().__init__()
        if not hasattr(scheduler, "alphas_cumprod") or float(scheduler.init_noise_sigma) != 1.0:
            raise ConfigError(
                f"BrainDiVE needs a variance-preserving scheduler, got {type(scheduler).__name__}",
                expected="alphas_cumprod and init_noise_sigma == 1 (DPMSolverMultistep, DDIM, UniPC, DEIS, PNDM)",
                found=f"init_noise_sigma={getattr(scheduler, 'init_noise_sigma', None)}",
                fix="use DPMSolverMultistepScheduler.from_config(scheduler.config)",
            )
        if scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError("unsupported prediction_type", expected="epsilon or v_prediction",
                              found=str(scheduler.config.prediction_type))
        if not isinstance(brain_encoder, torch.nn.Module) or not hasattr(brain_encoder, "device"):
            brain_encoder = _EncoderModule(brain_encoder)
        for module in (unet, vae, brain_encoder):  # gradients flow to the latents only: no weight-grad buffers
            module.requires_grad_(False)
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler, brain_encoder=brain_encoder,
                              text_encoder=text_encoder, tokenizer=tokenizer)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def set_precision(self, dtype: torch.dtype = torch.float16, *, channels_last: bool = True) -> BrainDiVEPipeline:
        """Cast the UNet and VAE to ``dtype`` (fp16/bf16 on GPU) and make them channels-last; the brain encoder and
        the latents stay float32. Returns the pipeline."""
        for module in (self.unet, self.vae):
            module.to(dtype=dtype)
            if channels_last:
                module.to(memory_format=torch.channels_last)
        return self

    def empty_prompt_embeds(self) -> torch.Tensor | None:
        """Conditioning for the empty prompt: from the text encoder when there is one, else zeros; None for an
        unconditional UNet."""
        if "encoder_hidden_states" not in inspect.signature(self.unet.forward).parameters:
            return None
        if self.text_encoder is not None and self.tokenizer is not None:
            tokens = self.tokenizer([""], padding="max_length", max_length=self.tokenizer.model_max_length,
                                    truncation=True, return_tensors="pt")
            return self.text_encoder(tokens.input_ids.to(self.text_encoder.device))[0]
        return torch.zeros(1, 77, self.unet.config.cross_attention_dim)

    def _initial_latents(self, seeds: Sequence[int], height: int, width: int, device: torch.device) -> torch.Tensor:
        shape = (self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(device) * self.scheduler.init_noise_sigma

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> float32 images in [0, 1]."""
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        return (self.vae.decode(latents).sample.float() / 2 + 0.5).clamp(0, 1)

    def _unet(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        inp = self.scheduler.scale_model_input(x, t).to(self.unet.dtype)
        return self.unet(inp, t, **({} if cond is None else {"encoder_hidden_states": cond})).sample.float()

    @contextmanager
    def _attention_store(self, active: bool) -> Iterator[dict]:
        """Record the mid-block self-attention probabilities and map size of each UNet call (SAG's input)."""
        if not active:
            yield {}
            return
        from diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag import (
            CrossAttnStoreProcessor,
        )

        attentions = getattr(getattr(self.unet, "mid_block", None), "attentions", None)
        if not attentions:
            raise ConfigError("self-attention guidance needs a UNet with mid-block self-attention",
                              found=type(self.unet).__name__, fix="pass sag_scale=0")
        attn, store, record = attentions[0].transformer_blocks[0].attn1, CrossAttnStoreProcessor(), {}
        original = attn.processor
        attn.set_processor(store)
        hook = attentions[0].register_forward_hook(lambda m, i, o: record.update(size=o[0].shape[-2:]))
        record.update(store=store, heads=attn.heads)
        try:
            yield record
        finally:
            hook.remove()
            attn.set_processor(original)

    def _sag_eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, eps: torch.Tensor,
                 record: dict, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The UNet's epsilon on x_t degraded where the stored self-attention is high (diffusers' sag_masking)."""
        from diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag import (
            gaussian_blur_2d,
        )

        x0 = (x - sigma * eps) / alpha
        probs = record["store"].attention_probs.detach().float()
        b, channels, h, w = x0.shape
        probs = probs.reshape(b, record["heads"], probs.shape[1], probs.shape[2])
        mask = (probs.mean(1).sum(1) > 1.0).reshape(b, 1, *record["size"]).float()
        mask = torch.nn.functional.interpolate(mask.expand(b, channels, -1, -1), (h, w))
        degraded = gaussian_blur_2d(x0, kernel_size=9, sigma=1.0) * mask + x0 * (1 - mask)
        degraded = self.scheduler.add_noise(degraded, noise=eps, timesteps=t[None])
        out = self._unet(degraded, t, cond)
        return alpha * out + sigma * degraded if self.scheduler.config.prediction_type == "v_prediction" else out

    def _guided_step(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, objective: Objective | None,
                     scale: float, sag_scale: float = 0.0) -> torch.Tensor:
        """The UNet's output at (x, t) with self-attention guidance (``sag_scale`` > 0) and moved along the
        objective's gradient (``scale`` > 0); both 0: the plain UNet output."""
        guided = objective is not None and scale > 0
        abar = self.scheduler.alphas_cumprod[int(t)].to(x.device, torch.float32)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        v_pred = self.scheduler.config.prediction_type == "v_prediction"
        with self._attention_store(sag_scale > 0) as record, torch.set_grad_enabled(guided):
            x = x.detach().requires_grad_(guided)
            out = self._unet(x, t, cond)
            if not guided and sag_scale <= 0:
                return out
            eps = alpha * out + sigma * x if v_pred else out
            grad = torch.zeros_like(x)
            if guided:
                x0 = (x - sigma * eps) / alpha
                image = self._decode(sigma * x0 + (1 - sigma) * x)
                value = score(objective, self.brain_encoder(image).float()).sum()
                (grad,) = torch.autograd.grad(value, x)
            x, eps = x.detach(), eps.detach()
            if sag_scale > 0:
                with torch.no_grad():
                    eps = eps + sag_scale * (eps - self._sag_eps(x, t, cond, eps, record, alpha, sigma))
        eps = eps - sigma * scale * grad
        return (eps - sigma * x) / alpha if v_pred else eps

    @torch.no_grad()
    def __call__(
        self,
        objective: Objective | None,
        seeds: Sequence[int],
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 130.0,
        sag_scale: float = 0.75,
        guidance_schedule: str = "constant",
        height: int | None = None,
        width: int | None = None,
        prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        progress: bool = True,
        on_step: Callable[[], object] | None = None,
    ) -> BrainDiVEOutput:
        """Sample one image per seed, guided towards ``objective`` (None or ``guidance_scale=0``: unguided).

        Parameters
        ----------
        objective : Objective or None
        seeds : sequence of int
            One image per seed, all in one batch; an image depends on its seed only.
        num_inference_steps : int
        guidance_scale : float
            Brain-guidance scale (BrainDiVE used 100-150 for SD-2.1-base with encoders of z-scored responses).
        sag_scale : float
            Self-attention guidance scale at every step (0.75 in BrainDiVE; 0 turns it off).
        guidance_schedule : {"constant", "linear", "cosine"}
            How the scale varies over the run (linear and cosine fall to 0 at the last step).
        height, width : int, optional
            Image size; default: the UNet's sample size x the VAE's scale factor.
        prompt_embeds : Tensor, optional
            Conditioning (1 or n, L, D); default :meth:`empty_prompt_embeds`.
        output_type : {"pil", "np"}
        progress : bool
            Show a progress bar over the steps.
        on_step : callable, optional
            Called after every denoising step (e.g. to advance a progress bar shared by several calls).
        """
        if guidance_schedule not in SCHEDULES:
            raise ConfigError("unknown guidance schedule", expected=str(sorted(SCHEDULES)), found=guidance_schedule)
        if output_type not in ("pil", "np"):
            raise ConfigError("unknown output_type", expected="pil or np", found=str(output_type))
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ConfigError("no seeds given", fix="pass at least one seed")
        device = self._execution_device
        size = self.unet.config.sample_size * self.vae_scale_factor
        height, width = height or size, width or size
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise ConfigError("image size must be a multiple of the VAE's scale factor",
                              expected=f"multiples of {self.vae_scale_factor}", found=f"{height}x{width}")
        cond = self.empty_prompt_embeds() if prompt_embeds is None else prompt_embeds
        if cond is not None:
            cond = cond.to(device, self.unet.dtype).expand(len(seeds), -1, -1)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = self._initial_latents(seeds, height, width, device)
        timesteps = self.scheduler.timesteps
        schedule = SCHEDULES[guidance_schedule]
        for i, t in enumerate(progress_bar(timesteps, desc="BrainDiVE steps", enabled=progress)):
            scale = guidance_scale * schedule(i / max(len(timesteps) - 1, 1))
            out = self._guided_step(latents, t, cond, objective, scale, sag_scale)
            latents = self.scheduler.step(out, t, latents, return_dict=False)[0]
            if on_step is not None:
                on_step()
        images = (self._decode(latents) * 255).round() / 255
        predictions = self.brain_encoder(images).float()
        scores = torch.full((len(seeds),), float("nan")) if objective is None else score(objective, predictions)
        array = images.permute(0, 2, 3, 1).cpu().numpy()
        return BrainDiVEOutput(
            images=self.numpy_to_pil(array) if output_type == "pil" else array,
            predictions=predictions.cpu().numpy(),
            scores=scores.cpu().numpy(),
            seeds=seeds,
        )


