"""Token readouts: gradients through the kernels against the reference backend, recovery of known receptive
fields and of position-invariant routing, memory of per-voxel queries, save/load, routing maps, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from braincode.data.rois import roi_groups
from braincode.encoding.readouts import (
    FactorizedReadout,
    RoutingModule,
    RoutingReadout,
    load_readout,
    sine_positions,
)
from braincode.encoding.routing_maps import box_share, routing_maps, save_overlays
from braincode.errors import ConfigError, DataFormatError, MissingFileError, NotFittedError

GRID = (4, 4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"d_model": 16, "n_heads": 2, "d_ff": 32, "device": "cpu"}


def _module(backend, seed=0, **kwargs):
    torch.manual_seed(seed)
    settings = {"query_index": None, "n_queries": 3, "n_voxels": 5, "d_model": 16, "n_heads": 2, "d_ff": 32,
                "dropout": 0.0, **kwargs}
    return RoutingModule(6, GRID, 1, backend=backend, **settings)


def _grads(module, tokens):
    module.zero_grad()
    out = module(tokens)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("backend", ["chunked", "sdpa"])
@pytest.mark.parametrize("mode", ["roi", "voxel", "all"])
def test_routing_gradients_through_kernels_match_reference(backend, mode):
    kwargs = {"roi": {"query_index": torch.tensor([0, 0, 1, 2, 1])}, "voxel": {"per_voxel": True, "n_queries": 5,
              "voxel_chunk": 2}, "all": {}}[mode]
    tokens = torch.randn(3, 17, 6, generator=torch.Generator().manual_seed(1))
    ref_out, ref_grads = _grads(_module("reference", **kwargs), tokens)
    out, grads = _grads(_module(backend, **kwargs), tokens)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    assert ref_grads.keys() == grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-3, atol=1e-5, msg=name)


def test_routing_gradients_match_finite_differences():
    module = _module("chunked", query_index=torch.tensor([0, 1, 2, 2, 0])).double()
    tokens = torch.randn(2, 17, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    queries = module.queries.detach().clone().requires_grad_(True)

    def run(q):
        keys, values = module.memory(tokens)
        return module.decode(q, keys, values)

    assert torch.autograd.gradcheck(run, (queries,), eps=1e-6, atol=1e-5)


def test_per_voxel_queries_never_hold_the_whole_score_matrix():
    n_voxels, batch, heads = 40_000, 2, 2
    module = _module("chunked", per_voxel=True, n_queries=n_voxels, n_voxels=n_voxels, voxel_chunk=4096,
                     d_model=8)
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
    assert module.queries.grad.abs().sum(1).gt(0).all()  # every voxel's query got a gradient
    whole = module.voxel_chunk
    module.voxel_chunk = n_voxels
    with torch.no_grad():
        torch.testing.assert_close(module(tokens), out.detach(), rtol=1e-5, atol=1e-5)
    module.voxel_chunk = whole


def _prf_data(seed=0, n=320):
    """Voxel v reads patch PATCHES[v] with its own feature weights: a pure spatial x feature model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16, 6)).astype(np.float32)
    patches = [5, 10, 3]
    Y = np.stack([X[:, p] @ rng.normal(size=6) for p in patches], 1)
    return X, (Y + 0.2 * rng.normal(size=Y.shape)).astype(np.float32), patches


def test_factorized_finds_the_receptive_field():
    X, Y, patches = _prf_data()
    model = FactorizedReadout(lr=0.05, max_epochs=30, device="cpu").fit(X[:260], Y[:260])
    maps = model.spatial_maps_.reshape(len(patches), -1)
    assert maps.argmax(1).tolist() == patches
    assert (maps[np.arange(3), patches] > 0.5).all()
    np.testing.assert_allclose(maps.sum(1), 1.0, rtol=1e-5)
    assert model.score_voxels(X[260:], Y[260:]).min() > 0.9


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
    model = RoutingReadout(queries="roi", lr=3e-3, max_epochs=25, patience=25, dropout=0.0, num_prefix_tokens=1,
                           **SMALL).fit(X[:320], Y[:320], ["lh/FFA-1", "rh/FFA-1"])
    assert model.score_voxels(X[320:], Y[320:]).min() > 0.8
    maps = routing_maps(model, X[320:], ["lh/FFA-1"]).of("lh/FFA-1").reshape(80, 16)
    assert maps[np.arange(80), where[320:]].mean() > 0.25  # chance: 1/16
    cells = np.stack([where[320:] % 4, where[320:] // 4], 1) / 4.0
    boxes = np.hstack([cells, cells + 0.25])
    assert box_share(maps.reshape(80, 4, 4), boxes).mean() == pytest.approx(maps[np.arange(80), where[320:]].mean())


def test_same_seed_same_model_and_save_load_roundtrip(tmp_path):
    X, Y, _ = _prf_data(n=80)
    groups = ["a", "b", "a"]
    first = RoutingReadout(max_epochs=2, random_state=7, **SMALL).fit(X, Y, groups)
    second = RoutingReadout(max_epochs=2, random_state=7, **SMALL).fit(X, Y, groups)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    for model in (first, FactorizedReadout(max_epochs=2, device="cpu").fit(X, Y)):
        folder = model.save(tmp_path / type(model).__name__)
        config = json.loads((folder / "config.json").read_text())
        assert config["class"] == type(model).__name__
        again = load_readout(folder)
        assert type(again) is type(model)
        np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-6, atol=1e-6)
    assert load_readout(tmp_path / "RoutingReadout").query_labels_ == ["a", "b"]
    assert first.score(X, Y) == pytest.approx(first.score_voxels(X, Y).mean())
    with pytest.raises(DataFormatError, match="unknown readout class"):
        FactorizedReadout.load(tmp_path / "RoutingReadout")


def test_memory_mapped_tokens_give_the_same_model(tmp_path):
    X, Y, _ = _prf_data(n=60)
    np.save(tmp_path / "tokens.npy", X)
    mapped = np.load(tmp_path / "tokens.npy", mmap_mode="r")
    in_memory = FactorizedReadout(max_epochs=2, device="cpu").fit(X, Y)
    from_disk = FactorizedReadout(max_epochs=2, device="cpu").fit(mapped, Y)
    np.testing.assert_array_equal(from_disk.predict(mapped), in_memory.predict(X))


def test_routing_maps_overlays_are_written(tmp_path):
    X, Y, _ = _prf_data(n=40)
    model = RoutingReadout(queries=2, max_epochs=1, **SMALL).fit(X, Y)
    maps = routing_maps(model, X[:3])
    np.testing.assert_allclose(maps.maps.sum((2, 3)), 1.0, rtol=1e-5)
    images = [Image.new("RGB", (32, 32), (i * 60, 90, 90)) for i in range(3)]
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [np.nan] * 4, [0.0, 0.5, 1.0, 1.0]])
    path = save_overlays(maps, images, tmp_path / "maps.png", boxes=boxes)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > png.height  # 3 columns, 2 rows
    with pytest.raises(ConfigError, match="unknown query labels"):
        routing_maps(model, X[:3], ["lh/FFA-1"])


def test_roi_groups_and_positions():
    voxels = pd.DataFrame({"hemisphere": ["lh", "lh", "rh", "rh"], "vertex": [0, 1, 0, 1],
                           "roi:prf-visualrois": ["V1v", "", "", ""], "roi:floc-faces": ["FFA-1", "FFA-1", "", "OFA"]})
    assert roi_groups(voxels).tolist() == ["lh/V1v", "lh/FFA-1", "rh/other", "rh/OFA"]
    assert roi_groups(voxels, ["floc-faces"], by_hemisphere=False).tolist() == ["FFA-1", "FFA-1", "other", "OFA"]
    pos = sine_positions((3, 5), 16).reshape(3, 5, 16)
    assert torch.unique(pos.reshape(15, 16), dim=0).shape[0] == 15
    assert torch.equal(pos[:, :1, :8].expand(3, 5, 8), pos[:, :, :8])  # first half: the row only


def test_bad_input_is_explained(tmp_path):
    X, Y, _ = _prf_data(n=40)
    with pytest.raises(DataFormatError, match="blocks"):
        FactorizedReadout(device="cpu").fit(X.mean(1), Y)
    with pytest.raises(NotFittedError, match="not fitted"):
        RoutingReadout().predict(X)
    with pytest.raises(ConfigError, match="roi_groups"):
        RoutingReadout(**SMALL).fit(X, Y)
    with pytest.raises(ConfigError, match="unknown query mode"):
        RoutingReadout(queries="pixel", **SMALL).fit(X, Y)
    with pytest.raises(DataFormatError, match="grid"):
        FactorizedReadout(num_prefix_tokens=1, device="cpu").fit(X, Y)
    with pytest.raises(DataFormatError, match="one row per token map"):
        FactorizedReadout(device="cpu").fit(X, Y[:-1])
    model = FactorizedReadout(max_epochs=1, device="cpu").fit(X, Y)
    with pytest.raises(DataFormatError, match="same model layer"):
        model.predict(X[:, :9])
    with pytest.raises(MissingFileError, match="config.json"):
        load_readout(tmp_path)


def test_fit_command_with_token_readout_writes_the_fit_outputs(tmp_path):
    from braincode.cli import build_parser
    from braincode.data.synthetic import make_synthetic

    root = make_synthetic(tmp_path / "data", n_train=30, n_test=6, image_size=32, seed=0)
    parser = build_parser()
    base = ["fit", "--readout", "routing", "--data", str(root), "--subject", "subj01", "--model",
            "open_clip:tiny-vit@random", "--layer", "blocks.0", "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    args = parser.parse_args([*base, "--d-model", "16", "--heads", "2", "--d-ff", "16", "--epochs", "2",
                              "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    out = tmp_path / "out"
    for name in ("scores.csv", "summary.json", "lh_pred_test.npy", "rh_pred_test.npy", "routing_maps.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["readout"] == "routing"
    assert np.load(out / "lh_pred_test.npy").shape[0] == 6
    again = load_readout(out / "readout")
    assert again.n_voxels_ == len(pd.read_csv(out / "scores.csv"))
    bad = parser.parse_args([*base, "--queries", "pixels", "--out", str(tmp_path / "bad")])
    with pytest.raises(ConfigError, match="unknown --queries"):
        bad.func(bad)
    assert not (tmp_path / "bad" / "scores.csv").exists()
    pooled = parser.parse_args([*base[:-4], "--layer", "pooled", "--device", "cpu", "--out", str(tmp_path / "p")])
    with pytest.raises(ConfigError, match="reads the tokens of one block"):
        pooled.func(pooled)
