"""Token readouts: gradients through the kernels against the reference backend, recovery of known receptive
fields and of position-invariant routing, memory of per-voxel queries, convergence flags, ensembles, save/load,
routing maps, bad input, and the fit command."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from braincode import persist
from braincode.encoding import FactorizedReadout, ReadoutEnsemble, RoutingReadout, load_readout
from braincode.encoding.readouts_routing import RoutingModule
from braincode.encoding.routing_maps import box_share, routing_maps, save_overlays
from braincode.errors import ConfigError, DataFormatError, MissingFileError, NotFittedError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"d_model": 16, "n_heads": 2, "d_ff": 32, "device": "cpu"}
MASKS = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1.0]])


def _module(backend, seed=0, **kwargs):
    torch.manual_seed(seed)
    settings = {"query_masks": MASKS, "n_voxels": 5, "d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0,
                "num_prefix_tokens": 1, **kwargs}
    module = RoutingModule(6, backend=backend, **settings)
    with torch.no_grad():  # no parameter at a trivial value
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def _grads(module, tokens):
    module.zero_grad()
    out = module(tokens)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("backend", ["chunked", "sdpa"])
@pytest.mark.parametrize("per_voxel", [False, True])
def test_routing_gradients_through_kernels_match_reference(backend, per_voxel):
    kwargs = {"per_voxel": True, "voxel_chunk": 2} if per_voxel else {}
    tokens = torch.randn(3, 17, 6, generator=torch.Generator().manual_seed(1))
    ref_out, ref_grads = _grads(_module("reference", **kwargs), tokens)
    out, grads = _grads(_module(backend, **kwargs), tokens)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    assert ref_grads.keys() == grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-3, atol=1e-5, msg=name)


def test_roi_sum_equals_the_masked_per_query_readouts():
    module = _module("reference").eval()
    tokens = torch.randn(2, 17, 6)
    with torch.no_grad():
        expected = (module.per_query(tokens) * MASKS.T).sum(-1)
        torch.testing.assert_close(module(tokens), expected, rtol=1e-5, atol=1e-5)


def test_attention_dropout_is_on_in_training_only():
    module = _module("reference", dropout=0.5)
    tokens = torch.randn(2, 17, 6)
    module.train()
    torch.manual_seed(0)
    first = module(tokens)
    assert not torch.allclose(first, module(tokens))
    module.eval()
    torch.testing.assert_close(module(tokens), module(tokens))


def test_routing_gradients_match_finite_differences():
    module = _module("chunked").double()
    tokens = torch.randn(2, 17, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    embed = module.query_embed.detach().clone().requires_grad_(True)
    run = lambda e: torch.func.functional_call(module, {"query_embed": e}, (tokens,))
    assert torch.autograd.gradcheck(run, (embed,), eps=1e-6, atol=1e-5)


def test_per_voxel_queries_never_hold_the_whole_score_matrix():
    n_voxels, batch, heads = 40_000, 2, 2
    module = _module("chunked", per_voxel=True, n_voxels=n_voxels, voxel_chunk=4096, d_model=8, d_ff=8)
    tokens = torch.randn(batch, 17, 6)
    largest = [0]

    def pack(t):
        largest[0] = max(largest[0], t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(tokens)
    out.sum().backward()
    assert out.shape == (batch, n_voxels)
    assert largest[0] < batch * heads * n_voxels * 16 / 8  # full scores would be B * H * n_voxels * patches
    assert module.query_embed.grad.abs().sum(1).gt(0).all()  # every voxel's query got a gradient


def _prf_data(seed=0, n=320):
    """Voxel v reads patch PATCHES[v] with its own feature weights: a pure spatial x feature model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16, 6)).astype(np.float32)
    patches = [5, 10, 3]
    Y = np.stack([X[:, p] @ rng.normal(size=6) for p in patches], 1)
    return X, (Y + 0.2 * rng.normal(size=Y.shape)).astype(np.float32), patches


VOXELS3 = pd.DataFrame({"hemisphere": ["lh", "lh", "rh"], "roi:floc-faces": ["FFA-1", "", "FFA-1"],
                        "roi:floc-bodies": ["EBA", "EBA", ""]})


def test_factorized_finds_the_receptive_field_at_its_defaults():
    X, Y, patches = _prf_data()
    model = FactorizedReadout(device="cpu").fit(X[:260], Y[:260])
    maps = model.spatial_maps_.reshape(len(patches), -1)
    assert maps.argmax(1).tolist() == patches
    assert (maps[np.arange(3), patches] > 0.5).all()
    np.testing.assert_allclose(maps.sum(1), 1.0, rtol=1e-5)
    assert model.score_voxels(X[260:], Y[260:]).min() > 0.9
    assert not model.stopped_improving_ and model.validation_r_.shape == (3,)


def _object_data(seed=0, n=400, d=8):
    """A 'face' drawn at a random patch of each image; the voxel responds to its contrast wherever it is."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1 + 16, d)).astype(np.float32)
    face = rng.normal(size=d)
    face /= np.linalg.norm(face)
    where = rng.integers(0, 16, n)
    amplitude = rng.uniform(1.0, 3.0, n)
    X[np.arange(n), 1 + where] += (amplitude[:, None] * 4.0 * face).astype(np.float32)
    y = amplitude ** 2 + 0.1 * rng.normal(size=n)
    return X, np.stack([y, -y], 1).astype(np.float32), where


def test_routing_attends_to_the_object_wherever_it_is():
    X, Y, where = _object_data()
    voxels = pd.DataFrame({"hemisphere": ["lh", "rh"], "roi:floc-faces": ["FFA-1", "FFA-1"]})
    model = RoutingReadout(lr=3e-3, max_epochs=25, patience=25, dropout=0.0, num_prefix_tokens=1,
                           **SMALL).fit(X[:320], Y[:320], voxels)
    assert model.score_voxels(X[320:], Y[320:]).min() > 0.8
    maps = routing_maps(model, X[320:], ["lh/FFA-1"]).of("lh/FFA-1").reshape(80, 16)
    assert maps[np.arange(80), where[320:]].mean() > 0.2  # chance: 1/16
    cells = np.stack([where[320:] % 4, where[320:] // 4], 1) / 4.0
    boxes = np.hstack([cells, cells + 0.25])
    assert box_share(maps.reshape(80, 4, 4), boxes).mean() == pytest.approx(maps[np.arange(80), where[320:]].mean())


def test_same_seed_same_model_and_save_load_roundtrip(tmp_path):
    X, Y, _ = _prf_data(n=80)
    first = RoutingReadout(max_epochs=2, random_state=7, **SMALL).fit(X, Y, VOXELS3)
    second = RoutingReadout(max_epochs=2, random_state=7, **SMALL).fit(X, Y, VOXELS3)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    ensemble = ReadoutEnsemble(FactorizedReadout(max_epochs=2, device="cpu"), n_runs=2).fit(X, Y)
    models = (first, RoutingReadout("voxel", max_epochs=1, **SMALL).fit(X, Y),
              FactorizedReadout(max_epochs=2, device="cpu").fit(X, Y), ensemble)
    for model in models:
        folder = model.save(tmp_path / f"{type(model).__name__}{id(model)}")
        config = json.loads((folder / "config.json").read_text())
        assert config["class"].endswith(type(model).__name__)
        again = persist.load(folder, device="cpu")
        assert type(again) is type(model)
        np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(again.validation_r_, model.validation_r_)
    assert load_readout(tmp_path / f"RoutingReadout{id(first)}").query_labels_ == [
        "lh/FFA-1", "lh/EBA", "lh/unknown", "rh/FFA-1", "rh/unknown"]  # families in column order
    assert first.score(X, Y) == pytest.approx(first.score_voxels(X, Y).mean())
    with pytest.raises(DataFormatError, match="not this kind"):
        FactorizedReadout.load(tmp_path / f"RoutingReadout{id(first)}")


def test_ensemble_averages_runs_on_one_split():
    X, Y, _ = _prf_data(n=120)
    base = FactorizedReadout(max_epochs=3, device="cpu")
    ens = ReadoutEnsemble(base, n_runs=3).fit(X, Y)
    runs = [FactorizedReadout(max_epochs=3, device="cpu", random_state=i) for i in range(3)]
    val = ens.validation_index_
    train = np.setdiff1d(np.arange(len(X)), val)
    mean = np.mean([r.fit(X[train], Y[train], X_val=X[val], Y_val=Y[val]).predict(X) for r in runs], 0)
    np.testing.assert_allclose(ens.predict(X), mean, rtol=1e-5, atol=1e-6)
    assert ens.fit_info_["readout"] == "ReadoutEnsemble(FactorizedReadout x 3)"


def test_a_run_stopped_while_improving_is_flagged():
    X, Y, _ = _prf_data(n=120)
    short = FactorizedReadout(max_epochs=2, lr=1e-3, device="cpu").fit(X, Y)
    assert short.stopped_improving_ and short.fit_info_["stopped_improving"]
    assert short.fit_info_["score"].startswith("validation")


def test_memory_mapped_tokens_give_the_same_model(tmp_path):
    X, Y, _ = _prf_data(n=60)
    np.save(tmp_path / "tokens.npy", X)
    mapped = np.load(tmp_path / "tokens.npy", mmap_mode="r")
    in_memory = FactorizedReadout(max_epochs=2, device="cpu").fit(X, Y)
    from_disk = FactorizedReadout(max_epochs=2, device="cpu").fit(mapped, Y)
    np.testing.assert_array_equal(from_disk.predict(mapped), in_memory.predict(X))


def test_routing_maps_overlays_are_written(tmp_path):
    X, Y, _ = _prf_data(n=40)
    model = RoutingReadout(max_epochs=1, **SMALL).fit(X, Y, VOXELS3)
    maps = routing_maps(model, X[:3], ["lh/EBA", "rh/FFA-1"])
    np.testing.assert_allclose(maps.maps.sum((2, 3)), 1.0, rtol=1e-5)
    images = [Image.new("RGB", (32, 32), (i * 60, 90, 90)) for i in range(3)]
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [np.nan] * 4, [0.0, 0.5, 1.0, 1.0]])
    path = save_overlays(maps, images, tmp_path / "maps.png", boxes=boxes)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > png.height  # 3 columns, 2 rows
    with pytest.raises(ConfigError, match="unknown query labels"):
        routing_maps(model, X[:3], ["lh/OFA"])


def test_bad_input_is_explained(tmp_path):
    X, Y, _ = _prf_data(n=40)
    with pytest.raises(DataFormatError, match="blocks"):
        FactorizedReadout(device="cpu").fit(X.mean(1), Y)
    with pytest.raises(NotFittedError, match="not fitted"):
        RoutingReadout().predict(X)
    with pytest.raises(ConfigError, match="voxel table"):
        RoutingReadout(**SMALL).fit(X, Y)
    with pytest.raises(ConfigError, match="unknown query mode"):
        RoutingReadout(queries="pixel", **SMALL).fit(X, Y)
    with pytest.raises(ConfigError, match="unknown routing preset"):
        RoutingReadout.from_preset("gpu")
    with pytest.raises(DataFormatError, match="grid"):
        FactorizedReadout(num_prefix_tokens=1, device="cpu").fit(X, Y)
    with pytest.raises(DataFormatError, match="one row per token map"):
        FactorizedReadout(device="cpu").fit(X, Y[:-1])
    model = FactorizedReadout(max_epochs=1, device="cpu").fit(X, Y)
    with pytest.raises(DataFormatError, match="same model layer"):
        model.predict(X[:, :9])
    with pytest.raises(MissingFileError, match="config.json"):
        load_readout(tmp_path)


def test_fit_command_with_token_readout_labels_its_scores(tmp_path):
    from braincode.cli import build_parser
    from braincode.data.synthetic import make_synthetic

    root = make_synthetic(tmp_path / "data", n_train=30, n_test=6, image_size=32, seed=0)
    parser = build_parser()
    base = ["fit", "--readout", "routing", "--data", str(root), "--subject", "subj01", "--model",
            "open_clip:tiny-vit@random", "--layer", "blocks.0", "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    args = parser.parse_args([*base, "--d-model", "16", "--heads", "2", "--d-ff", "16", "--epochs", "2",
                              "--out", str(tmp_path / "out")])
    assert args.preset == "published" and args.func(args) == 0
    out = tmp_path / "out"
    for name in ("scores.csv", "summary.json", "lh_pred_test.npy", "rh_pred_test.npy", "routing_maps.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["readout"] == "RoutingReadout" and summary["methods"]["r"].startswith("validation")
    assert summary["diagnostics"]["epochs_run"] == 2 and isinstance(summary["stopped_improving"], bool)
    assert np.load(out / "lh_pred_test.npy").shape[0] == 6
    again = load_readout(out / "readout")
    assert again.n_voxels_ == len(pd.read_csv(out / "scores.csv"))
    bad = parser.parse_args([*base, "--queries", "pixels", "--out", str(tmp_path / "bad")])
    with pytest.raises(ConfigError, match="unknown readout queries"):
        bad.func(bad)
    assert not (tmp_path / "bad" / "scores.csv").exists()
    pooled = parser.parse_args([*base[:-4], "--layer", "pooled", "--device", "cpu", "--out", str(tmp_path / "p")])
    with pytest.raises(ConfigError, match="reads the tokens of one block"):
        pooled.func(pooled)


def test_summary_flags_a_run_stopped_while_improving(tmp_path):
    from braincode.cli import build_parser
    from braincode.data.synthetic import make_synthetic

    root = make_synthetic(tmp_path / "data", n_train=40, n_test=6, image_size=32, seed=1)
    args = build_parser().parse_args(
        ["fit", "--readout", "factorized", "--data", str(root), "--subject", "subj01", "--model",
         "open_clip:tiny-vit@random", "--layer", "blocks.0", "--cache", str(tmp_path / "cache"), "--device", "cpu",
         "--epochs", "2", "--lr", "0.001", "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stopped_improving"] is True and summary["diagnostics"]["epochs_run"] == 2


def test_the_command_builds_published_sizes_presets_and_ensembles():
    import argparse

    from braincode.commands.readout import build_readout

    args = argparse.Namespace(readout="routing", queries="roi", preset="published", d_model=None, heads=None,
                              d_ff=None, epochs=None, batch_size=None, lr=None, seed=3, device="cpu")
    published = build_readout(args, 1)
    assert (published.d_model, published.n_heads, published.d_ff, published.dropout) == (768, 16, 1024, 0.1)
    cpu = build_readout(argparse.Namespace(**{**vars(args), "preset": "cpu", "heads": 4}), 1)
    assert (cpu.d_model, cpu.n_heads, cpu.num_prefix_tokens, cpu.random_state) == (256, 4, 1, 3)
    ensemble = build_readout(argparse.Namespace(**{**vars(args), "runs": 3}), 1)
    assert isinstance(ensemble, ReadoutEnsemble) and ensemble.n_runs == 3


def test_routing_sizes_given_to_the_factorized_readout_are_an_error():
    import argparse

    from braincode.commands.readout import build_readout

    args = argparse.Namespace(readout="factorized", queries="roi", preset="published", d_model=None, heads=8,
                              d_ff=None, epochs=None, batch_size=None, lr=None, seed=0, device="cpu")
    with pytest.raises(ConfigError, match="routing readout given to the factorized") as err:
        build_readout(args, 1)
    assert "n_heads" in str(err.value)
    assert isinstance(build_readout(argparse.Namespace(**{**vars(args), "heads": None}), 1), FactorizedReadout)
