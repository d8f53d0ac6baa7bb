"""Embedding bank and BrainSCUBA: projection against a dense float64 computation, bounded reads over a memmapped
bank, ROI captions, the linear encoder."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from braincode.data.core import Stimuli
from braincode.data.rois import select_rois
from braincode.errors import ConfigError, DataFormatError, MissingFileError
from braincode.features import get_extractor
from braincode.interpret.bank import (
    EmbeddingBank,
    bank_from_arrays,
    load_bank,
    subject_overlap,
    warn_subject_overlap,
)
from braincode.interpret.bank_build import build_bank
from braincode.interpret.decoders import RetrievalDecoder
from braincode.interpret.scuba import caption_rois, caption_voxels, project, roi_summaries
from braincode.interpret.scuba_encoder import (
    Recipe,
    _shift,
    fit_encoder,
    fit_encoder_on_images,
    load_encoder,
)


def _dense_projection(w: np.ndarray, raw: np.ndarray, temperature: float) -> np.ndarray:
    """BrainSCUBA's formula written out in float64 over the whole bank."""
    w_hat = w / np.linalg.norm(w, axis=1, keepdims=True)
    norms = np.linalg.norm(raw, axis=1)
    m_hat = raw / norms[:, None]
    logits = temperature * w_hat @ m_hat.T
    s = np.exp(logits - logits.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    direction = s @ m_hat
    return direction / np.linalg.norm(direction, axis=1, keepdims=True) * (s @ norms)[:, None]


class _RecordingArray(np.ndarray):
    """An ndarray view that remembers the largest number of rows any indexing returned."""

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if isinstance(out, np.ndarray) and out.ndim >= 1 and out.base is not None:
            type(self).max_rows = max(type(self).max_rows, len(out))
        return out


def _memmap_bank(tmp_path, n: int, dim: int, seed: int = 0) -> tuple[EmbeddingBank, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, dim)) * rng.uniform(0.5, 2.0, (n, 1))
    return load_bank(bank_from_arrays([f"i{i}" for i in range(n)], raw).save(tmp_path / "bank")), raw


@pytest.mark.parametrize("temperature", [1.0, 150.0])
def test_projection_equals_dense_computation(tmp_path, temperature):
    bank, raw = _memmap_bank(tmp_path, 1000, 16)
    assert isinstance(bank.unit, np.memmap)
    w = np.random.default_rng(1).standard_normal((7, 16))
    expected = _dense_projection(w, raw, temperature)
    got = project(w, bank, temperature=temperature, key_chunk=128, device="cpu")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # only the direction of w matters
    np.testing.assert_allclose(project(5.0 * w, bank, temperature=temperature, key_chunk=1000, device="cpu"), got,
                               rtol=1e-4, atol=1e-5)


def test_high_temperature_projects_onto_the_nearest_entry(tmp_path):
    bank, raw = _memmap_bank(tmp_path, 300, 8)
    w = np.random.default_rng(2).standard_normal((5, 8))
    nearest = np.argmax(w @ (raw / np.linalg.norm(raw, axis=1, keepdims=True)).T, axis=1)
    np.testing.assert_allclose(project(w, bank, temperature=1e5, key_chunk=64, device="cpu"), raw[nearest],
                               rtol=1e-3, atol=1e-4)


def test_projection_streams_the_bank_in_chunks(tmp_path):
    bank, raw = _memmap_bank(tmp_path, 20000, 8)
    _RecordingArray.max_rows = 0
    recorded = EmbeddingBank(bank.ids, bank.unit.view(_RecordingArray), bank.norms.view(_RecordingArray))
    w = np.random.default_rng(3).standard_normal((4, 8))
    got = project(w, recorded, temperature=150.0, key_chunk=1000, device="cpu")
    assert 0 < _RecordingArray.max_rows <= 1000, "the bank was read in pieces larger than key_chunk"
    np.testing.assert_allclose(got, _dense_projection(w, raw, 150.0), rtol=1e-4, atol=1e-5)


def test_projection_bad_input(tmp_path):
    bank, _ = _memmap_bank(tmp_path, 10, 4)
    with pytest.raises(DataFormatError, match=r"expected \(n_voxels, 4\).*found \(2, 5\)"):
        project(np.ones((2, 5)), bank)
    with pytest.raises(ConfigError, match="temperature must be positive"):
        project(np.ones((2, 4)), bank, temperature=0.0)


def test_roi_summaries_come_from_the_voxels_captions():
    """Every voxel is captioned; an ROI's caption is its most frequent voxel caption (not the decoded mean)."""
    voxels = pd.DataFrame({"hemisphere": "lh", "vertex": range(5), "roi:floc-faces": ["FFA-1", "FFA-1", "FFA-1", "", "OFA"]})
    proj = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 3.0], [0.0, 5.0], [-0.1, 1.0]])  # mean of FFA-1 is house-like
    dec = RetrievalDecoder(["a face", "a house"], np.eye(2))
    assert caption_voxels(proj, dec) == ["a face", "a face", "a house", "a house", "a house"]
    table = caption_rois(proj, voxels, "floc-faces", dec)
    assert table[["roi", "voxels", "caption"]].values.tolist() == [["FFA-1", 3, "a face"], ["OFA", 1, "a house"]]
    assert table["caption_share"].tolist() == [0.667, 1.0]
    assert table["top_words"][0] == "face (2); house (1)"
    units = select_rois(voxels, ["FFA", "floc-faces:OFA"])
    assert roi_summaries(caption_voxels(proj, dec), units)["voxels"].tolist() == [3, 1]
    with pytest.raises(ConfigError, match="no ROI 'PPA' in floc-faces"):
        caption_rois(proj, voxels, "floc-faces", dec, rois=["PPA"])


QUICK = Recipe(lr=5e-2, weight_decay=0.0, batch_size=64, epochs=15)


@pytest.mark.parametrize("method", ["ridge", "adamw"])
def test_encoder_recovers_a_linear_map_on_normalised_embeddings(tmp_path, method):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)) * rng.uniform(0.5, 3.0, (400, 1))  # norms vary: only directions count
    true = rng.standard_normal((3, 6))
    y = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ true.T + 0.01 * rng.standard_normal((400, 3))
    voxels = pd.DataFrame({"hemisphere": "lh", "vertex": range(3), "roi:floc-faces": ["FFA-1", "", "OFA"]})
    encoder = fit_encoder(x, y, voxels, method=method, model_id="m", alphas=[1e-4, 1e-2, 1.0], recipe=QUICK,
                          holdout=0.1, device="cpu")
    corr = [np.corrcoef(encoder.coef[i], true[i])[0, 1] for i in range(3)]
    assert min(corr) > (0.999 if method == "ridge" else 0.99)
    # 40 stimuli held out: never fitted on, scored there
    assert len(encoder.heldout_ids) == 40 and not set(encoder.heldout_ids) & set(encoder.train_ids)
    assert encoder.val_r.shape == (3,) and encoder.val_r.min() > 0.9
    assert encoder.top_voxels(2).tolist() == np.argsort(-encoder.val_r)[:2].tolist()
    again = load_encoder(encoder.save(tmp_path / "fit"))
    np.testing.assert_array_equal(again.coef, encoder.coef)
    np.testing.assert_array_equal(again.val_r, encoder.val_r)
    np.testing.assert_allclose(again.predict(x[:5]), encoder.predict(x[:5]), rtol=1e-6)
    assert (again.model_id, again.method, again.heldout_ids) == ("m", method, encoder.heldout_ids)
    pd.testing.assert_frame_equal(again.voxels, voxels)


def test_published_recipe_decays_the_learning_rate_to_half():
    """The authors' schedule: lr * 0.5 ** (epoch / epochs), so the last epoch runs at half the initial rate."""
    seen = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    x, y = np.random.default_rng(0).standard_normal((40, 3)), np.zeros((40, 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", spy)
        fit_encoder(x, y, pd.DataFrame({"v": [0]}), recipe=Recipe(epochs=4, batch_size=32), device="cpu")
    assert len(seen) == 8  # 2 batches of (at most) 32 per epoch
    np.testing.assert_allclose(seen[::2], [3e-4 * 0.5 ** (e / 4) for e in range(1, 5)])


def test_shift_pads_with_the_edge_like_the_reference():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    for dx, dy in [(2, -3), (-4, 1), (0, 0)]:
        out = _shift(x, dx, dy).numpy()
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="edge")
        expected = padded[:, :, 4 + dx:4 + dx + 5, 4 + dy:4 + dy + 6]
        np.testing.assert_array_equal(out, expected)


def test_published_encoder_runs_clip_on_augmented_images(tmp_path):
    """The published fit on images (tiny random CLIP): CLIP in the loop, held-out images scored, augmentation
    changes the fit (shift/noise 0 gives a different map)."""
    from braincode.data import load_algonauts
    from braincode.data.synthetic import make_synthetic

    train = load_algonauts(make_synthetic(tmp_path, n_train=24, n_test=2, image_size=64, seed=0), "subj01")["train"]
    y = train.responses.data[:, :5]
    vox = train.responses.voxels.iloc[:5]
    recipe = Recipe(epochs=2, batch_size=8)
    enc = fit_encoder_on_images(train.stimuli, y, vox, "open_clip:tiny-vit@random", holdout=0.25, recipe=recipe,
                                device="cpu")
    assert enc.method == "published" and enc.coef.shape == (5, 64) and len(enc.heldout_ids) == 6
    assert np.isfinite(enc.val_r).all()
    plain = fit_encoder_on_images(train.stimuli, y, vox, "open_clip:tiny-vit@random", holdout=0.25,
                                  recipe=Recipe(epochs=2, batch_size=8, shift=0, noise=0.0), device="cpu")
    assert not np.allclose(plain.coef, enc.coef)


def test_encoder_bad_input(tmp_path):
    voxels = pd.DataFrame({"hemisphere": "lh", "vertex": range(3)})
    with pytest.raises(DataFormatError, match="responses and voxel table disagree"):
        fit_encoder(np.ones((10, 4)), np.ones((9, 3)), voxels)
    with pytest.raises(ConfigError, match="unknown encoder method"):
        fit_encoder(np.ones((10, 4)), np.ones((10, 3)), voxels, method="sgd")
    with pytest.raises(ConfigError, match="held-out fraction"):
        fit_encoder(np.ones((10, 4)), np.ones((10, 3)), voxels, holdout=1.0)
    with pytest.raises(MissingFileError, match="incomplete"):
        load_encoder(tmp_path)
    enc = fit_encoder(np.eye(4), np.ones((4, 3)), voxels, method="ridge", alphas=[1.0], cv=2, device="cpu")
    with pytest.raises(ConfigError, match="no held-out scores"):
        enc.top_voxels(2)


def test_bank_overlap_with_the_subject_is_warned(caplog):
    bank = bank_from_arrays(["coco/001.jpg", "shared/train-0003_nsd-00042.png"], np.eye(2))
    stimuli = Stimuli(ids=["train-0001_nsd-00042", "train-0002_nsd-00007"])
    assert subject_overlap(bank, stimuli) == ["shared/train-0003_nsd-00042.png"]
    with caplog.at_level("WARNING"):
        assert warn_subject_overlap(bank, stimuli) == 1
    assert "holds 1 of the subject's own stimuli" in caplog.text
    assert warn_subject_overlap(bank, Stimuli(ids=["other"])) == 0


def test_bank_round_trip_and_raw_embeddings(tmp_path):
    raw = np.array([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]])
    bank = bank_from_arrays(["a", "b", "c"], raw, captions=["x", "", "z"], model_id="minilm", source="captions")
    again = load_bank(bank.save(tmp_path / "bank"))
    np.testing.assert_allclose(again.embeddings(), raw, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(again.unit, axis=1), 1.0, rtol=1e-6)
    assert (again.captions, again.model_id, again.source, again.paths) == (("x", "", "z"), "minilm", "captions", None)
    assert not [p for p in (tmp_path / "bank").iterdir() if p.name.startswith(".")], "temporary files left"


def test_build_bank_from_folder_and_hdf5_agree(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"img{i}.png")
    pd.DataFrame({"image": [f"img{i}.png" for i in range(5)], "caption": list("abcde")}).to_csv(
        folder.parent / "captions.csv", index=False)
    with h5py.File(tmp_path / "bank.h5", "w") as f:
        f["images"] = pixels
    from_folder = build_bank(folder, "open_clip:tiny-vit@random", tmp_path / "b1", chunk=2, device="cpu")
    from_h5 = build_bank(tmp_path / "bank.h5", "open_clip:tiny-vit@random", tmp_path / "b2", chunk=3, device="cpu")
    assert from_folder.captions == tuple("abcde") and from_h5.captions is None
    np.testing.assert_allclose(from_folder.unit, from_h5.unit, atol=1e-5)
    expected = from_folder.embed(from_folder.stimuli(), device="cpu", progress=False)
    np.testing.assert_allclose(from_folder.embeddings(), expected, rtol=1e-5, atol=1e-6)
    # texts go through the CLIP text tower of the same model: the joint space, same dimension
    text = get_extractor("open_clip_text:tiny-vit@random", device="cpu").extract(["a face"], progress=False)
    np.testing.assert_allclose(from_folder.text_encoder()(["a face"]), text["pooled"], rtol=1e-5)


def test_bank_bad_input(tmp_path):
    with pytest.raises(MissingFileError, match="not an embedding bank.*build_bank"):
        load_bank(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no images in the folder"):
        build_bank(tmp_path / "empty", "open_clip:tiny-vit@random", tmp_path / "b")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["pixels"] = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(DataFormatError, match='a dataset "images" of shape'):
        build_bank(tmp_path / "x.h5", "open_clip:tiny-vit@random", tmp_path / "b")
    with pytest.raises(DataFormatError, match="bank arrays disagree"):
        EmbeddingBank(("a",), np.zeros((2, 3)), np.zeros(2))
