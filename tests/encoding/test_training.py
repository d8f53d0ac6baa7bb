"""The shared readout training loop: convergence to least squares, best-epoch restore, determinism, bad input."""

import numpy as np
import pytest
import torch

from braincode.encoding.metrics import pearson_r
from braincode.encoding.training import TrainConfig, predict_batches, train_readout
from braincode.errors import ConfigError, DataFormatError

CPU = torch.device("cpu")


def _linear_problem(seed=0, n=240, p=5, v=3, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    W = rng.normal(size=(p, v)).astype(np.float32)
    Y = (X @ W + noise * rng.normal(size=(n, v))).astype(np.float32)
    return X[:200], Y[:200], X[200:], Y[200:]


def _fit(seed=0, **config):
    X, Y, Xv, Yv = _linear_problem()
    settings = {"lr": 0.05, "max_epochs": 40, "patience": 40, "grad_clip": None, "weight_decay": 0.0, **config}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = torch.nn.Linear(X.shape[1], Y.shape[1])
    history = train_readout(module, X, Y, Xv, Yv, config=TrainConfig(**settings), random_state=seed, device="cpu")
    return module, history, (X, Y, Xv, Yv)


def test_converges_to_least_squares():
    module, history, (X, Y, _, _) = _fit()
    design = np.hstack([X, np.ones((len(X), 1), np.float32)])
    solution, *_ = np.linalg.lstsq(design, Y, rcond=None)
    np.testing.assert_allclose(module.weight.detach().numpy(), solution[:-1].T, atol=0.03)
    assert history.best_val_r > 0.99


def test_keeps_the_best_validation_epoch():
    # a learning rate large enough to make the validation r wander, so the best epoch is not the last
    module, history, (_, _, Xv, Yv) = _fit(lr=0.8, max_epochs=12, patience=12)
    assert history.best_epoch == int(np.argmax(history.val_r))
    kept = predict_batches(module, Xv, batch_size=16, device=CPU)
    assert np.mean(pearson_r(Yv, kept)) == pytest.approx(history.best_val_r, abs=1e-6)


def test_stops_after_patience_epochs_without_improvement():
    _, history, _ = _fit(lr=0.8, max_epochs=30, patience=2)
    assert len(history.val_r) <= history.best_epoch + 3
    assert all(r <= history.best_val_r for r in history.val_r[history.best_epoch + 1:])


def test_gradient_clipping_is_applied():
    # clipped to a norm far below AdamW's eps, the steps shrink by ~grad/eps: the weights barely move
    start, _, _ = _fit(max_epochs=1, lr=1e-12)
    free, _, _ = _fit(max_epochs=2, patience=2)
    clipped, _, _ = _fit(max_epochs=2, patience=2, grad_clip=1e-12)
    assert (free.weight - start.weight).abs().max() > 0.1
    assert (clipped.weight - start.weight).abs().max() < 1e-4


def test_same_seed_same_weights_other_seed_other_weights():
    a, _, _ = _fit(seed=3, max_epochs=3)
    b, _, _ = _fit(seed=3, max_epochs=3)
    c, _, _ = _fit(seed=4, max_epochs=3)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)


def test_bad_inputs_are_explained():
    X, Y, Xv, Yv = _linear_problem()
    module = torch.nn.Linear(X.shape[1], Y.shape[1])
    with pytest.raises(DataFormatError, match="one row per stimulus"):
        train_readout(module, X, Y[:-1], Xv, Yv, device="cpu")
    with pytest.raises(DataFormatError, match="at least 3 validation rows"):
        train_readout(module, X, Y, Xv[:2], Yv[:2], device="cpu")
    with pytest.raises(ConfigError, match="lr must be positive"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="grad_clip"):
        TrainConfig(grad_clip=-1.0)
    with pytest.raises(ConfigError, match="unknown device"):
        train_readout(module, X, Y, Xv, Yv, device="tpu")
