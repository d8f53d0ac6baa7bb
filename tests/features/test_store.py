"""FeatureStore: second runs read instead of computing, partial runs compute only new stimuli, no partial files."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest

from braincode.features import CacheKey, FeatureStore


@contextmanager
def count_forwards(module):
    """Count calls of ``module`` (the vision tower) while the block runs."""
    calls = []
    handle = module.register_forward_pre_hook(lambda m, args: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def test_second_run_reads_the_cache_without_a_forward(tiny_vit, image_stimuli, tmp_path):
    n = len(image_stimuli)
    reference = tiny_vit.extract(image_stimuli, batch_size=4)
    store = FeatureStore(tmp_path)
    with count_forwards(tiny_vit.model.visual) as calls:
        first = tiny_vit.extract(image_stimuli, batch_size=4, store=store)
    assert len(calls) == 2 and store.stats == {"hits": 0, "misses": n}
    with count_forwards(tiny_vit.model.visual) as calls:
        second = tiny_vit.extract(image_stimuli, batch_size=4, store=FeatureStore(tmp_path))
    assert len(calls) == 0
    for layer in tiny_vit.requested:
        assert isinstance(second[layer], np.memmap) and not second[layer].flags.writeable
        np.testing.assert_array_equal(second[layer], first[layer])
        np.testing.assert_array_equal(second[layer], reference[layer])
    store2 = FeatureStore(tmp_path)
    tiny_vit.extract(image_stimuli, store=store2)
    assert store2.stats == {"hits": n, "misses": 0}


def test_partial_cache_computes_only_new_stimuli(tiny_vit, image_stimuli, tmp_path):
    reference = tiny_vit.extract(image_stimuli)
    store = FeatureStore(tmp_path)
    tiny_vit.extract(image_stimuli.subset([0, 1, 2, 3]), store=store)
    order = [5, 1, 4, 0, 1]  # two new stimuli, one repeated, shuffled
    with count_forwards(tiny_vit.model.visual) as calls:
        got = tiny_vit.extract(image_stimuli.subset(order), batch_size=1, store=store)
    assert len(calls) == 2  # stimuli 5 and 4 only, one per batch
    assert store.stats == {"hits": 3, "misses": 4 + 2}  # 1, 0, 1 read; 5, 4 computed
    for layer in tiny_vit.requested:
        np.testing.assert_allclose(got[layer], reference[layer][order], atol=1e-5, rtol=0)


def test_new_layer_of_cached_stimuli_is_computed(tiny_vit, image_stimuli, tmp_path):
    from braincode.features import get_extractor

    store = FeatureStore(tmp_path)
    tiny_vit.extract(image_stimuli, store=store)
    other = get_extractor("open_clip:tiny-vit@random", layers=["pooled", "blocks.2"], device="cpu")
    got = other.extract(image_stimuli, store=store)
    assert store.stats["misses"] == 2 * len(image_stimuli)
    np.testing.assert_allclose(got["blocks.2"], other.extract(image_stimuli)["blocks.2"], atol=1e-6)


@pytest.mark.parametrize("field", ["model_id", "fingerprint", "layer", "preprocess"])
def test_every_key_field_separates_entries(tmp_path, field):
    base = CacheKey("demo:model", "w0", "pooled", "resize 224")
    changed = CacheKey(**{**base.__dict__, field: "something else"})
    store = FeatureStore(tmp_path)
    ones = {"pooled": np.ones((1, 2), np.float32)}
    store.fetch({"pooled": base}, ["h"], lambda idx, allocate: ones)
    got = store.fetch(
        {"pooled": changed}, ["h"], lambda idx, allocate: {"pooled": np.zeros((1, 2), np.float32)}
    )
    assert store.stats == {"hits": 0, "misses": 2} and not got["pooled"].any()


def test_failed_computation_leaves_no_files(tmp_path):
    store = FeatureStore(tmp_path)

    def fail(idx, allocate):
        allocate("pooled", (len(idx), 8))[:] = 1.0  # half-written disk array, then a crash
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        store.fetch({"pooled": CacheKey("demo:model", "w0", "pooled", "p")}, ["a", "b"], fail)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_disk_arrays_become_chunks(tmp_path):
    store = FeatureStore(tmp_path)
    key = {"tokens": CacheKey("demo:model", "w0", "tokens", "p")}

    def compute(idx, allocate):
        out = allocate("tokens", (len(idx), 3, 2))
        out[:] = np.arange(len(idx))[:, None, None]
        return {"tokens": out}

    got = store.fetch(key, ["a", "b", "c"], compute)["tokens"]
    assert isinstance(got, np.memmap) and got.shape == (3, 3, 2)
    np.testing.assert_array_equal(got[:, 0, 0], [0, 1, 2])
    assert sorted(p.suffix for p in tmp_path.rglob("chunk-*")) == [".json", ".npy"]
    assert not [p for p in tmp_path.rglob(".*")]


def test_corrupt_chunk_is_ignored_and_recomputed(tmp_path, caplog):
    key = {"pooled": CacheKey("demo:model", "w0", "pooled", "p")}
    store = FeatureStore(tmp_path)
    store.fetch(key, ["a", "b"], lambda idx, allocate: {"pooled": np.ones((len(idx), 3), np.float32)})
    (npy,) = tmp_path.rglob("chunk-*.npy")
    npy.write_bytes(b"not an npy file")
    got = store.fetch(
        key, ["a", "b"], lambda idx, allocate: {"pooled": np.full((len(idx), 3), 2, np.float32)}
    )
    assert "ignoring unreadable cache chunk" in caplog.text
    assert store.stats == {"hits": 0, "misses": 4} and (got["pooled"] == 2).all()


def test_chunks_are_plain_npy_and_json(tiny_vit, image_stimuli, tmp_path):
    tiny_vit.extract(image_stimuli, store=FeatureStore(tmp_path))
    metas = sorted(tmp_path.rglob("chunk-*.json"))
    assert len(metas) == len(tiny_vit.requested)
    for meta in metas:
        info = json.loads(meta.read_text())
        assert info["hashes"] == list(image_stimuli.content_hashes)
        array = np.load(meta.with_suffix(".npy"), allow_pickle=False)
        assert array.dtype == np.float32 and array.shape[0] == len(image_stimuli)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_cached_chunks_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        store = FeatureStore(tmp_path)
        key = {"tokens": CacheKey("demo:model", "w0", "tokens", "p")}

        def compute(idx, allocate):
            out = allocate("tokens", (len(idx), 2))
            out[:] = 1.0
            return {"tokens": out}

        store.fetch(key, ["a", "b"], compute)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("chunk-*")}
    assert modes == {0o644}  # mkstemp alone gives 0o600: collaborators could not read the cache
