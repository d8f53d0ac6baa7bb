"""The differentiable encoder reproduces braincode's own feature + ridge pipeline, with usable gradients."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge

from braincode import persist
from braincode.data import load_algonauts
from braincode.data.synthetic import make_synthetic
from braincode.encoding.analysis import make_encoder
from braincode.encoding.torch_encoder import LinearReadout, TorchEncoder
from braincode.errors import ConfigError, DataFormatError, MissingFileError, NotFittedError
from braincode.features import get_extractor, pool_tokens
from braincode.features.design import FeatureSpec, extract_design
from braincode.features.pooling import pool_token_tensor

SPEC = FeatureSpec("open_clip:tiny-vit@random", ("blocks.1", "pooled"), pool="grid", out_grid=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Synthetic subject at the ViT's own input size, features by the extractor, StandardScaler + RidgeEncoder."""
    root = make_synthetic(tmp_path_factory.mktemp("syn"), "subj01", n_train=40, n_test=6, image_size=224, seed=0)
    ds = load_algonauts(root, "subj01")
    X = extract_design({s: ds[s].stimuli for s in ("train", "test")}, SPEC, device="cpu")
    model = make_encoder(alphas=[1.0, 100.0, 1e4], cv=3, device="cpu").fit(X["train"], ds["train"].responses.data)
    stim = ds["test"].stimuli
    images = np.stack([np.asarray(stim.image(i)) for i in range(len(stim))])
    tensors = torch.from_numpy(images.astype(np.float32) / 255).permute(0, 3, 1, 2)
    encoder = TorchEncoder.from_estimator(SPEC, model, voxels=ds.voxels, device="cpu")
    return {"model": model, "X_test": X["test"], "images": tensors, "encoder": encoder, "voxels": ds.voxels}


def test_matches_the_numpy_pipeline(fitted):
    with torch.no_grad():
        ours = fitted["encoder"](fitted["images"]).numpy()
    reference = fitted["model"].predict(fitted["X_test"])
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())


def test_design_matches_extractor_features(fitted):
    with torch.no_grad():
        design = fitted["encoder"].design(fitted["images"]).numpy()
    np.testing.assert_allclose(design, fitted["X_test"], rtol=1e-4, atol=1e-4)


def test_gradient_matches_finite_differences(fitted):
    encoder = fitted["encoder"]
    x = fitted["images"][:2].clone().requires_grad_(True)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    f = lambda img: encoder(img)[:, :10].mean()
    (grad,) = torch.autograd.grad(f(x), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    h = 1e-2
    with torch.no_grad():
        numeric = (f(x + h * direction) - f(x - h * direction)) / (2 * h)
    assert float((grad * direction).sum()) == pytest.approx(float(numeric), rel=2e-2, abs=1e-5)


def test_other_image_sizes_are_resized(fitted):
    small = torch.nn.functional.interpolate(fitted["images"], size=96, mode="bilinear", antialias=True)
    with torch.no_grad():
        pred = fitted["encoder"](small).numpy()
    reference = fitted["model"].predict(fitted["X_test"])
    assert pred.shape == reference.shape
    assert np.corrcoef(pred.ravel(), reference.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("mode", ["mean", "cls", "grid"])
def test_pooling_twin_equals_pool_tokens(mode):
    tokens = np.random.default_rng(0).normal(size=(3, 1 + 5 * 4, 6)).astype(np.float32)
    kw = {"num_prefix_tokens": 1, "grid": (5, 4), "mode": mode, "out_grid": 3}
    np.testing.assert_allclose(pool_token_tensor(torch.from_numpy(tokens), **kw).numpy(), pool_tokens(tokens, **kw),
                               rtol=1e-6, atol=1e-6)


def test_linear_readout_equals_sklearn_ridge():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(30, 5)), rng.normal(size=(30, 3))
    ridge = Ridge(alpha=2.0).fit(X, Y)
    readout = LinearReadout.from_estimator(ridge)
    np.testing.assert_allclose(readout(torch.tensor(X, dtype=torch.float32)).numpy(), ridge.predict(X), atol=1e-5)
    with pytest.raises(NotFittedError, match="has no coef_"):
        LinearReadout.from_estimator(Ridge())


def test_save_load_round_trip(fitted, tmp_path):
    fitted["encoder"].save(tmp_path)
    assert type(persist.load(tmp_path, device="cpu")) is TorchEncoder
    loaded = TorchEncoder.load(tmp_path, device="cpu")
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(fitted["images"]).numpy(), fitted["encoder"](fitted["images"]).numpy())
    pd.testing.assert_frame_equal(loaded.voxels, fitted["voxels"].reset_index(drop=True), check_dtype=False)
    assert loaded.config == SPEC


def test_bad_inputs_have_clear_messages(fitted, tmp_path):
    ext = get_extractor(SPEC.model_id, layers=list(SPEC.layers), device="cpu")
    with pytest.raises(DataFormatError, match="readout does not fit the features.*576 features.*found 7"):
        TorchEncoder(ext, SPEC, LinearReadout(np.zeros((2, 7)), np.zeros(2)))
    with pytest.raises(MissingFileError, match="config.json"):
        TorchEncoder.load(tmp_path)
    with pytest.raises(ConfigError, match="not an image model"):
        TorchEncoder(get_extractor("minilm", device="cpu"), FeatureSpec("minilm"), LinearReadout(np.zeros((1, 1)), [0]))
    with pytest.raises(DataFormatError, match=r"\(n, 3, H, W\)"):
        fitted["encoder"](torch.zeros(2, 224, 224))


def test_loads_the_brainscuba_encoder_of_a_caption_fit(fitted, tmp_path):
    """``braincode caption`` saves a linear map on L2-normalised pooled embeddings: it loads as a TorchEncoder."""
    from braincode.interpret.scuba import LinearEncoder

    ext = fitted["encoder"].extractor
    with torch.no_grad():
        pooled = ext.model.encode_image(fitted["encoder"].preprocess(fitted["images"])).numpy()
    rng = np.random.default_rng(2)
    scuba = LinearEncoder(rng.normal(size=(4, pooled.shape[1])).astype(np.float32), rng.normal(size=4).astype(
        np.float32), fitted["voxels"].iloc[:4].reset_index(drop=True), model_id=SPEC.model_id)
    scuba.save(tmp_path)
    loaded = TorchEncoder.load(tmp_path, device="cpu")
    with torch.no_grad():
        ours = loaded(fitted["images"]).numpy()
    np.testing.assert_allclose(ours, scuba.predict(pooled), rtol=1e-4, atol=1e-5)
