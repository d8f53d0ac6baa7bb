"""BrainDiVE on tiny random-weight diffusion models, on CPU, with no hub access."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler
from PIL import Image

from braincode.encoding.torch_encoder import LinearReadout, TorchEncoder
from braincode.errors import ConfigError
from braincode.features import get_extractor
from braincode.features.design import FeatureSpec
from braincode.interpret._dive_models import SD_SCHEDULE, random_diffusion
from braincode.interpret.dive import BrainDiVEPipeline
from braincode.interpret.dive_objectives import roi_objective, voxel_objective
from braincode.interpret.dive_runs import SampleSettings, synthesize

STEPS = 4
VOXELS = pd.DataFrame(
    {
        "hemisphere": ["lh"] * 6,
        "vertex": range(6),
        "roi:floc-faces": ["FFA-1", "FFA-1", "FFA-2", "", "", ""],
        "roi:floc-places": ["", "", "", "PPA", "PPA", ""],
    }
)


def conv_encoder() -> torch.nn.Module:
    """A small fixed random conv net: a real, non-linear function of the image, 6 'voxels'."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 5, stride=2), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(32, 6),
        )
    return net.requires_grad_(False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe() -> BrainDiVEPipeline:
    parts = random_diffusion("tiny")
    return BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, conv_encoder())


def run(pipe, objective, seeds, scale, sag=0.75, **kw):
    return pipe(objective, seeds, num_inference_steps=STEPS, guidance_scale=scale, sag_scale=sag, output_type="np",
                progress=False, **kw)


SEEDS = [0, 1, 2]
FFA = roi_objective(VOXELS, "FFA")


@pytest.fixture(scope="module")
def runs(pipe):
    """Unguided and guided samples of the same seeds, shared by the tests below (CPU time is scarce)."""
    return {"plain": run(pipe, FFA, SEEDS, 0.0), "guided": run(pipe, FFA, SEEDS, 1e4),
            "plain_no_sag": run(pipe, FFA, SEEDS, 0.0, sag=0.0), "guided_no_sag": run(pipe, FFA, SEEDS, 1e4, sag=0.0)}


def test_unguided_equals_plain_diffusers_loop(pipe, runs):
    """With both scales 0 the pipeline is exactly the textbook diffusers sampling loop (UNet -> scheduler.step)."""
    sched = pipe.scheduler
    sched.set_timesteps(STEPS)
    latents = torch.stack([torch.randn((4, 16, 16), generator=torch.Generator().manual_seed(s)) for s in SEEDS])
    cond = torch.zeros(len(SEEDS), 77, 32)
    with torch.no_grad():
        for t in sched.timesteps:
            eps = pipe.unet(sched.scale_model_input(latents, t), t, encoder_hidden_states=cond).sample
            latents = sched.step(eps, t, latents).prev_sample
        image = (pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    expected = ((image * 255).round() / 255).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(runs["plain_no_sag"].images, expected, atol=1e-6)


def test_sag_matches_diffusers_sag_pipeline(pipe, runs):
    """Brain scale 0, SAG 0.75: the images of diffusers' own StableDiffusionSAGPipeline (no classifier-free
    guidance, the empty-prompt conditioning, the same starting noise)."""
    from diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag import (
        StableDiffusionSAGPipeline,
    )

    sag = StableDiffusionSAGPipeline(pipe.vae, None, None, pipe.unet, pipe.scheduler, safety_checker=None,
                                     feature_extractor=None, requires_safety_checker=False)
    sag.set_progress_bar_config(disable=True)
    latents = torch.stack([torch.randn((4, 16, 16), generator=torch.Generator().manual_seed(s)) for s in SEEDS])
    images = sag(prompt_embeds=torch.zeros(len(SEEDS), 77, 32), latents=latents, num_inference_steps=STEPS,
                 guidance_scale=1.0, sag_scale=0.75, output_type="np").images
    np.testing.assert_allclose(runs["plain"].images, (images * 255).round() / 255, atol=1.5 / 255)


def test_sag_zero_is_the_brain_only_path_and_sag_changes_the_samples(pipe, runs):
    """SAG 0 gives the brain-only step exactly (the published update written out here); SAG 0.75 changes both the
    step and the final images, guided or not."""
    pipe.scheduler.set_timesteps(STEPS)
    t = pipe.scheduler.timesteps[1]
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(2, 77, 32)
    objective = voxel_objective([0, 1])
    xg = x.clone().requires_grad_(True)
    eps = pipe.unet(xg, t, encoder_hidden_states=cond).sample
    abar = pipe.scheduler.alphas_cumprod[int(t)]
    x0 = (xg - (1 - abar).sqrt() * eps) / abar.sqrt()
    image = pipe._decode((1 - abar).sqrt() * x0 + (1 - (1 - abar).sqrt()) * xg)
    (grad,) = torch.autograd.grad(objective(pipe.brain_encoder(image)).sum(), xg)
    expected = eps.detach() - (1 - abar).sqrt() * 1e4 * grad
    assert torch.equal(pipe._guided_step(x, t, cond, objective, 1e4, 0.0), expected)
    assert not torch.allclose(pipe._guided_step(x, t, cond, objective, 1e4, 0.75), expected)
    for plain, with_sag in (("plain_no_sag", "plain"), ("guided_no_sag", "guided")):
        assert np.abs(runs[plain].images - runs[with_sag].images).max() > 0.05


def test_guided_beats_unguided_for_every_seed(runs):
    """With SAG 0.75 on both sides (the published setting) and without it."""
    assert (runs["guided_no_sag"].scores > runs["plain_no_sag"].scores).all()
    plain, guided = runs["plain"], runs["guided"]
    assert np.isfinite(guided.scores).all() and np.isfinite(guided.images).all()
    assert (guided.scores > plain.scores).all(), (guided.scores, plain.scores)
    # the score is the objective recomputed from the returned predictions
    np.testing.assert_allclose(guided.scores, guided.predictions[:, [0, 1, 2]].mean(1), rtol=1e-5)


def test_published_scale_with_a_vit_encoder_raises_the_roi_for_every_seed():
    """The must-show: a tiny random ViT + linear readout (a braincode TorchEncoder), BrainDiVE's scale of 130."""
    config = FeatureSpec("open_clip:tiny-vit@random", ("blocks.1", "pooled"), "grid", 2)
    extractor = get_extractor(config.model_id, layers=list(config.layers), device="cpu")
    weights = np.random.default_rng(0).normal(size=(len(VOXELS), 576)) / 24
    encoder = TorchEncoder(extractor, config, LinearReadout(weights, np.zeros(len(VOXELS))), voxels=VOXELS)
    parts = random_diffusion("tiny")
    vit_pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, encoder)
    plain = run(vit_pipe, FFA, SEEDS, 0.0)
    guided = run(vit_pipe, FFA, SEEDS, 130.0)  # SAG 0.75 on both
    assert np.isfinite(guided.scores).all()
    assert (guided.scores > plain.scores + 0.1).all(), (guided.scores, plain.scores)


def test_suppression_objective_is_raised_by_its_own_guidance(pipe, runs):
    objective = roi_objective(VOXELS, "FFA-1", suppress="PPA")
    assert objective.target == (0, 1) and objective.suppress == (3, 4)
    guided = run(pipe, objective, SEEDS, 1e4)
    plain = objective(torch.from_numpy(runs["plain"].predictions)).numpy()
    assert (guided.scores > plain).all()
    diff = guided.predictions[:, :2].mean(1) - guided.predictions[:, 3:5].mean(1)
    np.testing.assert_allclose(guided.scores, diff, rtol=1e-5, atol=1e-7)


def test_guidance_gradient_is_finite_and_changes_the_update(pipe):
    pipe.scheduler.set_timesteps(STEPS)
    t = pipe.scheduler.timesteps[1]
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(2, 77, 32)
    objective = voxel_objective([0, 1])
    plain = pipe._guided_step(x, t, cond, objective, 0.0)
    guided = pipe._guided_step(x, t, cond, objective, 1e4)
    delta = guided - plain
    assert torch.isfinite(delta).all() and delta.abs().max() > 0
    # eps moves against the objective's gradient: a small step of x0 along -delta raises the objective
    abar = pipe.scheduler.alphas_cumprod[int(t)]
    x0 = (x - (1 - abar).sqrt() * plain) / abar.sqrt()
    with torch.no_grad():
        score = lambda lat: objective(pipe.brain_encoder(pipe._decode(lat)))
        step = -(1 - abar).sqrt() / abar.sqrt() * delta
        assert (score(x0 + step * 1e-3 / step.abs().max()) > score(x0)).all()


def test_v_prediction_round_trip_and_guidance():
    """For a v-predicting model, a vanishing scale returns the model's own v (eps <-> v conversions agree)."""
    parts = random_diffusion("tiny")
    sched = DDIMScheduler(**{**SD_SCHEDULE, "prediction_type": "v_prediction"})
    pipe = BrainDiVEPipeline(parts.unet, parts.vae, sched, conv_encoder())
    sched.set_timesteps(4)
    t = sched.timesteps[1]
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(1, 77, 32)
    obj = voxel_objective([0])
    v = pipe._guided_step(x, t, cond, obj, 0.0)
    torch.testing.assert_close(pipe._guided_step(x, t, cond, obj, 1e-12), v, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(pipe._guided_step(x, t, cond, obj, 1e4), v)


def test_image_depends_on_its_seed_only(pipe, runs):
    alone = run(pipe, FFA, [SEEDS[1]], 1e4)
    np.testing.assert_allclose(runs["guided"].images[1], alone.images[0], atol=2 / 255)
    assert not np.allclose(runs["guided"].images[0], runs["guided"].images[1])


def test_synthesize_writes_sidecars_and_resumes(pipe, tmp_path):
    objective = roi_objective(VOXELS, "FFA-1")
    settings = SampleSettings(num_inference_steps=3, guidance_scale=1e4)
    paths = synthesize(pipe, objective, [0, 1, 2], tmp_path, VOXELS, settings=settings, batch_size=2,
                       progress=False)
    assert [p.name for p in paths] == ["seed-00000000.png", "seed-00000001.png", "seed-00000002.png"]
    side = json.loads(paths[1].with_suffix(".json").read_text())
    assert side["seed"] == 1 and side["objective"]["name"] == "FFA-1"
    assert side["settings"]["guidance_scale"] == 1e4
    assert set(side["predicted"]) == {"floc-faces", "floc-places"}
    assert side["predicted"]["floc-faces"]["FFA-1"] == pytest.approx(side["objective_value"], rel=1e-5)
    # the saved PNG reproduces the recorded prediction
    image = torch.from_numpy(np.asarray(Image.open(paths[1]), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        pred = pipe.brain_encoder(image)[0, :2].mean().item()
    assert pred == pytest.approx(side["objective_value"], rel=1e-4)

    stamps = {p.name: p.stat().st_mtime_ns for p in paths}
    paths[1].with_suffix(".json").unlink()  # seed 1 interrupted between image and sidecar
    synthesize(pipe, objective, [0, 1, 2, 3], tmp_path, VOXELS, settings=settings, batch_size=2, progress=False)
    assert paths[0].stat().st_mtime_ns == stamps[paths[0].name]
    assert paths[2].stat().st_mtime_ns == stamps[paths[2].name]
    assert paths[1].with_suffix(".json").exists() and (tmp_path / "seed-00000003.json").exists()
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
    with pytest.raises(ConfigError, match="another objective or other settings"):
        synthesize(pipe, objective, [0, 5], tmp_path, VOXELS, settings=SampleSettings(num_inference_steps=4),
                   progress=False)


def test_unknown_roi_names_the_available_ones():
    with pytest.raises(ConfigError, match=r"no ROI named 'FFA-3'.*FFA-1.*PPA"):
        roi_objective(VOXELS, "FFA-3")
    with pytest.raises(ConfigError, match="no voxels outside"):
        roi_objective(VOXELS, "FFA-1", suppress="floc-faces:FFA-1")


def test_bad_inputs_are_refused(pipe):
    parts = random_diffusion("tiny")
    with pytest.raises(ConfigError, match="variance-preserving scheduler"):
        BrainDiVEPipeline(parts.unet, parts.vae, EulerDiscreteScheduler(**SD_SCHEDULE), conv_encoder())
    with pytest.raises(ConfigError, match="indexes voxels the encoder does not predict"):
        run(pipe, voxel_objective([0, 40]), [0], 1.0)
    with pytest.raises(ConfigError, match="guidance schedule"):
        run(pipe, voxel_objective([0]), [0], 1.0, guidance_schedule="exponential")
    with pytest.raises(ConfigError, match="multiple of the VAE"):
        run(pipe, voxel_objective([0]), [0], 1.0, height=33)


def test_schedules_scale_guidance(pipe, runs):
    fading = run(pipe, FFA, [SEEDS[0]], 1e4, guidance_schedule="linear")
    assert runs["plain"].scores[0] < fading.scores[0]
    assert not np.allclose(fading.images[0], runs["guided"].images[0])


def test_cli_fits_the_encoder_then_synthesizes_and_resumes(tmp_path, capsys):
    """`braincode synthesize` on a synthetic subject: fits an image encoder into --fit, writes images, resumes."""
    import argparse

    from braincode.commands import synthesize as command
    from braincode.data.synthetic import make_synthetic

    root = make_synthetic(tmp_path / "data", "subj01", n_train=30, n_test=2, image_size=64, seed=0)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    argv = ["synthesize", "--fit", str(tmp_path / "fit"), "--roi", "FFA-1", "--suppress", "PPA", "--n", "3",
            "--out", str(tmp_path / "out"), "--diffusion", "tiny@random", "--steps", "3", "--batch-size", "2",
            "--device", "cpu", "--data", str(root), "--subject", "subj01", "--model", "open_clip:tiny-vit@random",
            "--layer", "blocks.1", "--grid", "2", "--cv", "2", "--guide", "fit"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert (tmp_path / "fit" / "config.json").is_file()
    images = sorted((tmp_path / "out" / "FFA-1-vs-PPA").glob("seed-*.png"))
    assert [p.name for p in images] == ["seed-00000000.png", "seed-00000001.png", "seed-00000002.png"]
    side = json.loads(images[0].with_suffix(".json").read_text())
    assert side["objective"]["n_target"] > 0 and side["objective"]["n_suppress"] > 0
    assert {"floc-faces", "floc-places", "prf-visualrois"} <= set(side["predicted"])
    assert "wrote 3 images" in capsys.readouterr().out
    stamp = images[0].stat().st_mtime_ns
    args = parser.parse_args([*argv[:8], "4", *argv[9:]])  # one more seed: only seed 3 is new
    assert args.func(args) == 0
    assert images[0].stat().st_mtime_ns == stamp
    assert (tmp_path / "out" / "FFA-1-vs-PPA" / "seed-00000003.json").is_file()
    args = parser.parse_args([*argv[:4], "XYZ", *argv[5:]])
    with pytest.raises(ConfigError, match="no ROI named 'XYZ'"):
        args.func(args)
    # the published guide (default): a linear CLIP encoder fitted by the BrainSCUBA recipe into fit/scuba_encoder
    args = parser.parse_args(["synthesize", "--fit", str(tmp_path / "clip"), "--roi", "FFA-1", "--n", "1", "--out",
                              str(tmp_path / "out2"), "--diffusion", "tiny@random", "--steps", "2", "--device", "cpu",
                              "--data", str(root), "--subject", "subj01", "--model", "open_clip:tiny-vit@random",
                              "--encoder-epochs", "2"])
    assert args.func(args) == 0
    assert (tmp_path / "clip" / "scuba_encoder" / "config.json").is_file()
    side = json.loads((tmp_path / "out2" / "FFA-1" / "seed-00000000.json").read_text())
    assert side["settings"]["sag_scale"] == 0.75 and side["settings"]["guidance_scale"] == 130.0
    base = json.loads((tmp_path / "out2" / "FFA-1" / "natural_baseline.json").read_text())
    assert base["split"].startswith("validation") and base["n_images"] == 3  # 10% of 30 images, never fitted on
    assert {"mean", "p90", "synthesized_mean", "beats_natural_mean"} <= set(base)


def test_load_diffusion_reads_a_local_folder_offline(tmp_path):
    from braincode.errors import ModelError
    from braincode.interpret._dive_models import load_diffusion

    parts = random_diffusion("tiny")
    parts.unet.save_pretrained(tmp_path / "unet")
    parts.vae.save_pretrained(tmp_path / "vae")
    parts.scheduler.save_pretrained(tmp_path / "scheduler")
    loaded = load_diffusion(str(tmp_path))
    assert loaded.text_encoder is None and type(loaded.scheduler).__name__ == "DPMSolverMultistepScheduler"
    for a, b in zip(parts.unet.state_dict().values(), loaded.unet.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ModelError, match="cannot load the diffusion model offline.*fix: run `huggingface-cli"):
        load_diffusion(str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="unknown diffusion architecture"):
        load_diffusion("huge@random")


def test_clip_linear_guide_reads_images_as_braindive_does():
    """Bilinear resize to 224 (no crop), CLIP normalisation, CLIP image embedding, L2 norm, linear map."""
    from braincode.interpret.dive_encoder import ClipLinearGuide
    from braincode.interpret.scuba_encoder import LinearEncoder

    rng = np.random.default_rng(0)
    linear = LinearEncoder(rng.normal(size=(6, 64)).astype(np.float32), rng.normal(size=6).astype(np.float32),
                           VOXELS, model_id="open_clip:tiny-vit@random")
    guide = ClipLinearGuide.from_encoder(linear, device="cpu")
    images = torch.rand(2, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        emb = guide.extractor.run((x - mean) / std)[0]
        expected = torch.nn.functional.normalize(emb, dim=-1) @ torch.from_numpy(linear.coef).T + torch.from_numpy(
            linear.intercept)
        torch.testing.assert_close(guide(images), expected, atol=1e-5, rtol=1e-5)
    parts = random_diffusion("tiny")
    clip_pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, guide)
    plain, guided = run(clip_pipe, FFA, SEEDS, 0.0), run(clip_pipe, FFA, SEEDS, 130.0)
    assert (guided.scores > plain.scores).all(), (guided.scores, plain.scores)


def test_localizer_threshold_restricts_the_roi():
    t = np.array([3.0, 1.0, 2.5, 5.0, 0.0, 9.0])
    objective = roi_objective(VOXELS, "FFA", suppress="PPA", localizer_t=t)
    assert objective.target == (0, 2) and objective.suppress == (3,)
    assert roi_objective(VOXELS, "FFA", localizer_t=t, t_threshold=2.8).target == (0,)
    with pytest.raises(ConfigError, match="passes the localizer threshold"):
        roi_objective(VOXELS, "FFA-1", localizer_t=t, t_threshold=4.0)
    from braincode.errors import DataFormatError

    with pytest.raises(DataFormatError, match="t-map does not match"):
        roi_objective(VOXELS, "FFA", localizer_t=t[:3])
