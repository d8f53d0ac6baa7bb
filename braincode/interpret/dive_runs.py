"""Resumable BrainDiVE runs: one image and one JSON sidecar per seed, seeds already done are skipped."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from braincode.atomic import atomic_write
from braincode.data.rois import roi_index
from braincode.errors import ConfigError
from braincode.interpret.dive import BrainDiVEPipeline
from braincode.interpret.dive_objectives import Objective, roi_predictions
from braincode.progress import progress as progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSettings:
    """Settings of a synthesis run, recorded in every sidecar."""

    num_inference_steps: int = 50
    guidance_scale: float = 130.0
    sag_scale: float = 0.75
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
    >>> from braincode.interpret.dive_objectives import roi_objective
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
    steps = iter(progress_bar(itertools.repeat(None), desc=f"BrainDiVE {objective.name} (steps)",
                              total=len(batches) * settings.num_inference_steps, enabled=progress))
    for batch in batches:
        result = pipe(objective, batch, **asdict(settings), output_type="pil", progress=False,
                      on_step=lambda: next(steps))
        means = roi_predictions(result.predictions, index)
        for seed, image, score, roi_pred in zip(batch, result.images, result.scores, means):
            target = image_path(out, seed)
            atomic_write(target, lambda p, im=image: im.save(p, format="PNG"))
            sidecar = {"seed": seed, "image": target.name, "objective": objective.to_dict(),
                       "settings": asdict(settings), "scheduler": type(pipe.scheduler).__name__,
                       "dtype": str(pipe.unet.dtype).replace("torch.", ""),
                       "objective_value": float(score), "predicted": roi_pred}
            atomic_write(target.with_suffix(".json"), lambda p, s=sidecar: p.write_text(json.dumps(s, indent=2)))
    return paths


def natural_baseline(encoder, objective: Objective, stimuli, *, split: str, batch_size: int = 16) -> dict:
    """The objective the encoder predicts for natural images (held-out ones: images it never saw), the level a
    synthesised image is compared with. Images enter as the pipeline's do: RGB in [0, 1], the encoder resizes.

    Examples
    --------
    >>> import tempfile, torch
    >>> from PIL import Image
    >>> from braincode.data.core import Stimuli
    >>> from braincode.interpret.dive_objectives import voxel_objective
    >>> path = Path(tempfile.mkdtemp()) / "a.png"
    >>> Image.new("RGB", (8, 8), (255, 0, 0)).save(path)
    >>> enc = lambda x: x.mean((2, 3))  # 3 "voxels": the mean of each channel
    >>> natural_baseline(enc, voxel_objective([0]), Stimuli(ids=["a"], paths=[path]), split="validation")["mean"]
    1.0
    """
    import numpy as np
    import torch

    from braincode.interpret.dive_objectives import score

    device = getattr(encoder, "device", torch.device("cpu"))
    values = []
    for start in range(0, len(stimuli.ids), batch_size):
        index = range(start, min(start + batch_size, len(stimuli.ids)))
        images = np.stack([np.asarray(stimuli.image(i).convert("RGB"), dtype=np.float32) / 255 for i in index])
        with torch.no_grad():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device)
            values.append(score(objective, encoder(x).float()).cpu().numpy())
    v = np.concatenate(values)
    return {"split": split, "n_images": len(v), "mean": float(v.mean()), "p90": float(np.percentile(v, 90)),
            "max": float(v.max())}
