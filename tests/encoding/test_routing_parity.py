"""The routing readout against a forward pass of the authors' own code (``tests/fixtures/routing``, README there):
decoder outputs, per-query readouts, ROI-summed predictions (vertices in one, two and three ROIs) and attention
weights to 1e-5; positions and ROI masks rebuilt from scratch; their checkpoint format read safely."""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from braincode import persist
from braincode.encoding import RoutingReadout, load_reference_checkpoint, roi_query_masks
from braincode.encoding.readouts_reference import reference_query_masks
from braincode.encoding.readouts_routing import sine_positions
from braincode.errors import ConfigError, DataFormatError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "routing"
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(scope="module")
def ref():
    config = json.loads((FIXTURE / "config.json").read_text())
    inputs, outputs = load_file(FIXTURE / "inputs.safetensors"), load_file(FIXTURE / "outputs.safetensors")
    return config, load_file(FIXTURE / "state_dict.safetensors"), inputs, outputs


@pytest.fixture(scope="module")
def model(ref):
    config, state, inputs, _ = ref
    return RoutingReadout.from_reference(state, config, inputs["lh_roi_masks"], inputs["rh_roi_masks"])


def test_predictions_match_the_authors_code(ref, model):
    _, _, inputs, outputs = ref
    pred = model.predict(inputs["tokens_bnc"].numpy())
    expected = torch.cat([outputs["lh_pred"], outputs["rh_pred"]], 1).numpy()
    np.testing.assert_allclose(pred, expected, **TOL)
    masks = torch.cat([inputs["lh_roi_masks"].sum(0), inputs["rh_roi_masks"].sum(0)]).numpy()
    assert {1, 2, 3} <= set(masks.tolist())  # vertices in one, two and three queries are all covered
    for k in (2, 3):
        np.testing.assert_allclose(pred[:, masks == k], expected[:, masks == k], **TOL)


def test_decoder_outputs_per_query_readouts_and_attention_match(ref, model):
    _, _, inputs, outputs = ref
    tokens = inputs["tokens_bnc"]
    module = model.module_
    with torch.no_grad():
        keys, values = module.memory(tokens)
        torch.testing.assert_close(module.decode(slice(None), keys, values), outputs["output_tokens"], **TOL)
        per_query = module.per_query(tokens)
        torch.testing.assert_close(module.attention_maps(tokens), outputs["dec_attn_weights"][0], **TOL)
    torch.testing.assert_close(per_query[:, :24, :7], outputs["lh_f_pred_per_query"], **TOL)
    torch.testing.assert_close(per_query[:, 24:, 7:], outputs["rh_f_pred_per_query"], **TOL)
    assert model.query_labels_[6] == "lh/unknown" and model.query_labels_[7] == "rh/V1v"


def test_positions_and_masks_rebuilt_from_scratch(ref):
    config, _, inputs, _ = ref
    torch.testing.assert_close(sine_positions((4, 4), 32), inputs["pos_embed_bnc"][0], **TOL)
    for hemi in ("lh", "rh"):
        n_labels = [len(m) for m in config["roi_name_maps"]]
        masks = reference_query_masks(inputs[f"{hemi}_roi_labels"].numpy(), n_labels)
        np.testing.assert_array_equal(masks, inputs[f"{hemi}_roi_masks"].numpy())
    # the same masks from a voxel table with ROI names (our data's form)
    names = config["roi_name_maps"]
    tables = [pd.DataFrame({"hemisphere": hemi, **{f"roi:{fam}": [names[f][str(v)] if v else "" for v in
                                                         inputs[f"{hemi}_roi_labels"][f].tolist()]
                                                   for f, fam in enumerate(config["roi_families"])}})
              for hemi in ("lh", "rh")]
    masks, labels = roi_query_masks(pd.concat(tables, ignore_index=True), config["roi_families"])
    expected = np.zeros((14, 44), dtype=np.int64)
    expected[:7, :24], expected[7:, 24:] = inputs["lh_roi_masks"], inputs["rh_roi_masks"]
    np.testing.assert_array_equal(masks, expected)
    assert labels == [f"{h}/{n}" for h in ("lh", "rh") for n in config["lh_query_names"]]


def test_checkpoint_of_their_main_py_loads_and_saves_through_persist(ref, model, tmp_path):
    config, state, inputs, _ = ref
    args = argparse.Namespace(**config["args"], device=torch.device("cpu"), val_perf=np.float64(0.41))
    # the layout main.py writes with --save_model 1 (backbone keys dropped, args as a Namespace)
    torch.save({"model": dict(state), "lr_scheduler": {"step_size": 100, "gamma": 0.5, "last_epoch": 3},
                "epoch": 3, "args": args, "val_perf": np.float64(0.41)}, tmp_path / "checkpoint.pth")
    loaded = load_reference_checkpoint(tmp_path / "checkpoint.pth", inputs["lh_roi_masks"], inputs["rh_roi_masks"])
    tokens = inputs["tokens_bnc"].numpy()
    np.testing.assert_array_equal(loaded.predict(tokens), model.predict(tokens))
    again = persist.load(model.save(tmp_path / "saved"), device="cpu")
    np.testing.assert_array_equal(again.predict(tokens), model.predict(tokens))
    assert again.fit_info_["epochs_run"] == 0
    torch.save({"model": {"x": torch.zeros(1)}, "args": args, "hook": print}, tmp_path / "unsafe.pth")
    with pytest.raises(DataFormatError, match="safely"):
        load_reference_checkpoint(tmp_path / "unsafe.pth", inputs["lh_roi_masks"], inputs["rh_roi_masks"])


def test_unsupported_reference_configurations_are_refused(ref):
    config, state, inputs, _ = ref
    with pytest.raises(ConfigError, match="dec_layers"):
        RoutingReadout.from_reference(state, {"args": {**config["args"], "dec_layers": 2}},
                                      inputs["lh_roi_masks"], inputs["rh_roi_masks"])
    with pytest.raises(ConfigError, match="ROI masks"):
        RoutingReadout.from_reference(state, config)
    with pytest.raises(DataFormatError, match="do not match"):
        RoutingReadout.from_reference(state, config, inputs["lh_roi_masks"][:3], inputs["rh_roi_masks"])
    with pytest.raises(DataFormatError, match="lacks parameters"):
        RoutingReadout.from_reference({"query_embed.weight": state["query_embed.weight"]}, config,
                                      inputs["lh_roi_masks"], inputs["rh_roi_masks"])
