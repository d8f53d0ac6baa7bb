"""BrainDiVE: images synthesised by a latent diffusion model guided by the gradient of a brain encoder.

Luo et al., "Brain Diffusion for Visual Exploration" (NeurIPS 2023). At every denoising step the UNet's noise
estimate is pushed along the gradient of the encoder's predicted activation of a set of voxels:

    x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    image  = clamp(VAE.decode(sqrt(1 - abar) x0_hat + (1 - sqrt(1 - abar)) x_t) / 2 + 1/2, 0, 1)
    eps   <- eps - sqrt(1 - abar) * scale * grad_{x_t} objective(encoder(image))

The published setting is SD-2.1-base, DPM-Solver++ with 50 steps at 512x512, the empty prompt, no
classifier-free guidance and a scale of 100-150. Unlike the reference code, the UNet runs once per step (its
output with the graph kept serves both the update and the gradient), seeds are batched, and each seed's starting
noise is drawn on its own generator so that an image depends on its seed only, not on the batch it ran in.

Examples
--------
>>> import numpy as np, pandas as pd, torch
>>> from braincode.interpret._dive_models import random_diffusion
>>> parts = random_diffusion("tiny")
>>> voxels = pd.DataFrame({"hemisphere": ["lh"] * 4, "vertex": range(4), "roi:floc-faces": ["FFA-1", "FFA-1", "", ""]})
>>> encoder = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 4))
>>> pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, encoder)
>>> out = pipe(roi_objective(voxels, "FFA-1"), seeds=[0, 1], num_inference_steps=3, progress=False)
>>> len(out.images), out.predictions.shape
(2, (2, 4))
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from braincode.atomic import atomic_write
from braincode.data.rois import roi_index, roi_mask
from braincode.errors import ConfigError
from braincode.progress import progress as progress_bar

log = logging.getLogger(__name__)

#: Guidance-scale schedules over the denoising steps (fraction ``f`` of the run done, from 0 to 1).
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda f: 1.0,
    "linear": lambda f: 1.0 - f,
    "cosine": lambda f: 0.5 * (1.0 + math.cos(math.pi * f)),
}


# ----------------------------------------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class Objective:
    """What guidance maximises: mean prediction over ``target`` minus ``suppress_weight`` x mean over ``suppress``.

    Parameters
    ----------
    name : str
        Used for folder names and sidecars, e.g. ``"FFA-1"`` or ``"FFA-1-vs-PPA"``.
    target, suppress : tuple of int
        Voxel (column) indices of the encoder's output; ``suppress`` may be empty.
    suppress_weight : float
        Weight of the suppressed set.

    Examples
    --------
    >>> import torch
    >>> Objective("a-vs-b", (0, 1), (2,))(torch.tensor([[1.0, 3.0, 5.0]])).tolist()
    [-3.0]
    """

    name: str
    target: tuple[int, ...]
    suppress: tuple[int, ...] = ()
    suppress_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.target:
            raise ConfigError(f"objective {self.name!r} has no target voxels", fix="pick a non-empty ROI or voxel set")
        object.__setattr__(self, "target", tuple(int(i) for i in self.target))
        object.__setattr__(self, "suppress", tuple(int(i) for i in self.suppress))

    def __call__(self, predictions: torch.Tensor) -> torch.Tensor:
        """Objective value per image, from predictions of shape (n_images, n_voxels)."""
        value = predictions[:, list(self.target)].mean(1)
        if self.suppress:
            value = value - self.suppress_weight * predictions[:, list(self.suppress)].mean(1)
        return value

    def check(self, n_voxels: int) -> None:
        """Raise :class:`ConfigError` if an index does not exist in an encoder output of ``n_voxels`` columns."""
        top = max(self.target + self.suppress)
        if top >= n_voxels or min(self.target + self.suppress) < 0:
            raise ConfigError(
                f"objective {self.name!r} indexes voxels the encoder does not predict",
                expected=f"indices in [0, {n_voxels})",
                found=f"index {top}",
                fix="build the objective from the same voxel table as the encoder",
            )

    def to_dict(self) -> dict:
        """JSON-ready description (voxel counts rather than the full index lists when they are long)."""
        out = {"name": self.name, "n_target": len(self.target), "n_suppress": len(self.suppress),
               "suppress_weight": self.suppress_weight}
        if len(self.target) + len(self.suppress) <= 64:
            out.update(target=list(self.target), suppress=list(self.suppress))
        return out


def roi_objective(
    voxels: pd.DataFrame, roi: str, *, suppress: str | None = None, suppress_weight: float = 1.0
) -> Objective:
    """Maximise the mean predicted activation of ROI ``roi``, optionally minus that of ROI ``suppress``.

    ROIs are selected with :func:`braincode.data.rois.select_rois`' grammar: ``"FFA-1"``, ``"FFA"`` (FFA-1 and
    FFA-2), ``"family:label"`` or a whole family. Voxels in both ROIs count only as targets.

    Examples
    --------
    >>> import pandas as pd
    >>> v = pd.DataFrame({"hemisphere": ["lh"] * 3, "vertex": [0, 1, 2],
    ...                   "roi:floc-faces": ["FFA-1", "FFA-2", ""], "roi:floc-places": ["", "", "PPA"]})
    >>> o = roi_objective(v, "FFA", suppress="PPA")
    >>> o.name, o.target, o.suppress
    ('FFA-vs-PPA', (0, 1), (2,))
    """
    target = np.flatnonzero(roi_mask(voxels, roi))
    if suppress is None:
        return Objective(roi, tuple(target))
    other = np.setdiff1d(np.flatnonzero(roi_mask(voxels, suppress)), target)
    if other.size == 0:
        raise ConfigError(f"ROI {suppress!r} has no voxels outside {roi!r}", fix="suppress a different ROI")
    return Objective(f"{roi}-vs-{suppress}", tuple(target), tuple(other), suppress_weight)


def voxel_objective(indices: Sequence[int] | np.ndarray, *, name: str = "voxels") -> Objective:
    """Maximise the mean predicted activation of an explicit voxel set (column indices of the encoder output).

    Examples
    --------
    >>> voxel_objective([3, 1, 3]).target
    (1, 3)
    """
    return Objective(name, tuple(np.unique(np.asarray(indices, dtype=int))))


def roi_means(predictions: np.ndarray, index: dict[str, dict[str, np.ndarray]]) -> list[dict[str, dict[str, float]]]:
    """Mean prediction per ROI of every family for each image: a list of ``{family: {roi: mean}}``.

    Examples
    --------
    >>> import numpy as np
    >>> roi_means(np.array([[1.0, 2.0, 9.0]]), {"floc-faces": {"FFA-1": np.array([0, 1])}})
    [{'floc-faces': {'FFA-1': 1.5}}]
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    return [
        {fam: {roi: float(row[idx].mean()) for roi, idx in rois.items()} for fam, rois in index.items()}
        for row in predictions
    ]


def _score(objective: Objective, predictions: torch.Tensor) -> torch.Tensor:
    objective.check(predictions.shape[1])
    return objective(predictions)


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

    def _guided_step(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, objective: Objective | None,
                     scale: float) -> torch.Tensor:
        """The UNet's output at (x, t), moved along the objective's gradient when ``scale`` > 0."""
        guided = objective is not None and scale > 0
        with torch.set_grad_enabled(guided):
            x = x.detach().requires_grad_(guided)
            inp = self.scheduler.scale_model_input(x, t).to(self.unet.dtype)
            kwargs = {} if cond is None else {"encoder_hidden_states": cond}
            out = self.unet(inp, t, **kwargs).sample.float()
            if not guided:
                return out
            abar = self.scheduler.alphas_cumprod[int(t)].to(x.device, torch.float32)
            alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
            v_pred = self.scheduler.config.prediction_type == "v_prediction"
            eps = alpha * out + sigma * x if v_pred else out
            x0 = (x - sigma * eps) / alpha
            image = self._decode(sigma * x0 + (1 - sigma) * x)
            value = _score(objective, self.brain_encoder(image).float()).sum()
            (grad,) = torch.autograd.grad(value, x)
        eps = eps.detach() - sigma * scale * grad
        return (eps - sigma * x.detach()) / alpha if v_pred else eps

    @torch.no_grad()
    def __call__(
        self,
        objective: Objective | None,
        seeds: Sequence[int],
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 130.0,
        guidance_schedule: str = "constant",
        height: int | None = None,
        width: int | None = None,
        prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        progress: bool = True,
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
        guidance_schedule : {"constant", "linear", "cosine"}
            How the scale varies over the run (linear and cosine fall to 0 at the last step).
        height, width : int, optional
            Image size; default: the UNet's sample size x the VAE's scale factor.
        prompt_embeds : Tensor, optional
            Conditioning (1 or n, L, D); default :meth:`empty_prompt_embeds`.
        output_type : {"pil", "np"}
        progress : bool
            Show a progress bar over the steps.
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
            out = self._guided_step(latents, t, cond, objective, scale)
            latents = self.scheduler.step(out, t, latents, return_dict=False)[0]
        images = (self._decode(latents) * 255).round() / 255
        predictions = self.brain_encoder(images).float()
        scores = torch.full((len(seeds),), float("nan")) if objective is None else _score(objective, predictions)
        array = images.permute(0, 2, 3, 1).cpu().numpy()
        return BrainDiVEOutput(
            images=self.numpy_to_pil(array) if output_type == "pil" else array,
            predictions=predictions.cpu().numpy(),
            scores=scores.cpu().numpy(),
            seeds=seeds,
        )


# --------------------------------------------------------------------------------------------- resumable runs
@dataclass(frozen=True)
class SampleSettings:
    """Settings of a synthesis run, recorded in every sidecar."""

    num_inference_steps: int = 50
    guidance_scale: float = 130.0
    guidance_schedule: str = "constant"
    height: int | None = None
    width: int | None = None


def image_path(out: Path, seed: int) -> Path:
    """Where :func:`synthesize` puts the image of ``seed`` (its sidecar has the same stem, ``.json``)."""
    return Path(out) / f"seed-{int(seed):08d}.png"


def _check_resumable(out: Path, objective: Objective, settings: SampleSettings) -> None:
    """Refuse to add images to a folder whose earlier images were made for another objective or settings."""
    for sidecar in sorted(out.glob("seed-*.json")):
        done = json.loads(sidecar.read_text())
        if done.get("objective", {}).get("name") != objective.name or done.get("settings") != asdict(settings):
            raise ConfigError(
                "the output folder holds images made with another objective or other settings",
                path=out,
                expected=f"objective {objective.name!r}, settings {asdict(settings)}",
                found=f"{sidecar.name}: objective {done.get('objective', {}).get('name')!r}, "
                      f"settings {done.get('settings')}",
                fix="use a new output folder, or the settings of the earlier run",
            )
        return


def synthesize(
    pipe: BrainDiVEPipeline,
    objective: Objective,
    seeds: Sequence[int],
    out: str | Path,
    voxels: pd.DataFrame,
    *,
    settings: SampleSettings = SampleSettings(),
    batch_size: int = 4,
    progress: bool = True,
) -> list[Path]:
    """Synthesise one image per seed into ``out``, each with a sidecar JSON; seeds already done are skipped.

    Each image is ``out/seed-XXXXXXXX.png``; its sidecar (written last, atomically, so a present sidecar means a
    complete image) holds the seed, the objective, the settings, the objective's value and the predicted mean
    activation of every ROI of ``voxels``. Re-running the same call after an interruption only does the missing
    seeds.

    Returns
    -------
    list of Path
        The image of every seed, in the order of ``seeds``.

    Examples
    --------
    >>> import tempfile, pandas as pd, torch
    >>> from braincode.interpret._dive_models import random_diffusion
    >>> parts = random_diffusion("tiny")
    >>> v = pd.DataFrame({"hemisphere": ["lh"] * 2, "vertex": [0, 1], "roi:floc-faces": ["FFA-1", ""]})
    >>> enc = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, enc)
    >>> paths = synthesize(pipe, roi_objective(v, "FFA-1"), [0, 1], tempfile.mkdtemp(), v,
    ...                    settings=SampleSettings(num_inference_steps=2), progress=False)
    >>> [p.name for p in paths]
    ['seed-00000000.png', 'seed-00000001.png']
    """
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1", found=str(batch_size))
    out = Path(out)
    paths = [image_path(out, s) for s in seeds]
    todo = [int(s) for s, p in zip(seeds, paths) if not p.with_suffix(".json").exists()]
    if len(todo) < len(paths):
        _check_resumable(out, objective, settings)
        log.info("%s: %d of %d seeds already done, resuming", out, len(paths) - len(todo), len(paths))
    index = roi_index(voxels)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    for batch in progress_bar(batches, desc=f"BrainDiVE {objective.name}", enabled=progress):
        result = pipe(objective, batch, **asdict(settings), output_type="pil", progress=False)
        means = roi_means(result.predictions, index)
        for seed, image, score, roi_pred in zip(batch, result.images, result.scores, means):
            target = image_path(out, seed)
            atomic_write(target, lambda p, im=image: im.save(p, format="PNG"))
            sidecar = {"seed": seed, "image": target.name, "objective": objective.to_dict(),
                       "settings": asdict(settings), "scheduler": type(pipe.scheduler).__name__,
                       "dtype": str(pipe.unet.dtype).replace("torch.", ""),
                       "objective_value": float(score), "predicted": roi_pred}
            atomic_write(target.with_suffix(".json"), lambda p, s=sidecar: p.write_text(json.dumps(s, indent=2)))
    return paths
