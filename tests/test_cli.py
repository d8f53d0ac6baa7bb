"""The ``braincode`` command line: validate, fit, report, and errors without tracebacks."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braincode.cli import main
from braincode.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("cli"), n_train=40, n_test=8, seed=1)


def test_validate_ok(root, capsys):
    assert main(["validate", str(root), "--subject", "subj01"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "40 stimuli" in out and "floc-faces" in out


def test_validate_reports_broken_file_with_status_2(root, tmp_path, capsys):
    import shutil

    broken = Path(shutil.copytree(root, tmp_path / "data"))
    fmri = broken / "subj01" / "training_split" / "training_fmri" / "lh_training_fmri.npy"
    data = np.load(fmri)
    data[3, 7] = np.nan
    np.save(fmri, data)
    assert main(["validate", str(broken), "--subject", "subj01"]) == 2
    err = capsys.readouterr().err
    assert "lh_training_fmri.npy" in err and "NaN" in err and "Traceback" not in err


def test_fit_writes_scores_summary_and_algonauts_predictions(root, tmp_path, capsys):
    out = tmp_path / "fit"
    old_umask = os.umask(0o022)
    status = main(["--quiet", "fit", "--data", str(root), "--subject", "subj01",
                   "--model", "open_clip:tiny-vit@random", "--layer", "blocks.1", "--grid", "2", "--cv", "3",
                   "--permutations", "50",
                   "--cache", str(tmp_path / "cache"), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    n_lh, n_rh = (scores["hemisphere"] == "lh").sum(), (scores["hemisphere"] == "rh").sum()
    lh, rh = np.load(out / "lh_pred_test.npy"), np.load(out / "rh_pred_test.npy")
    assert lh.shape == (8, n_lh) and rh.shape == (8, n_rh)
    assert lh.dtype == rh.dtype == np.float32
    assert {"hemisphere", "vertex", "roi:floc-faces", "r", "r2", "alpha", "pvalue", "qvalue"} <= set(scores.columns)
    assert ((scores["pvalue"] > 0) & (scores["pvalue"] <= 1)).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["subject"] == "subj01" and "FFA-1" in summary["mean_r"]["floc-faces"]
    assert np.isclose(summary["mean_r"]["all"]["all"], scores["r"].mean())
    ffa = next(row for row in summary["r_ci95"] if row["roi"] == "FFA-1")
    assert ffa["ci_low"] <= summary["mean_r"]["floc-faces"]["FFA-1"] <= ffa["ci_high"]
    assert summary["significant_voxels"] == int(scores["significant"].sum())
    assert (out / "lh.r.gii").exists() and (out / "model.safetensors").exists()
    assert summary["pool"] == "grid" and summary["grid"] == 2
    # the report command reads the fit's scores
    assert main(["--quiet", "report", str(out), "--out", str(tmp_path / "report"), "--subject", "subj01"]) == 0
    assert "subj01" in (tmp_path / "report" / "report.html").read_text()
    # outputs are readable by others under umask 022; the run is described in run.json
    os.umask(old_umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()} == {0o644}
    assert json.loads((out / "run.json").read_text())["args"]["cv"] == 3
    # a refit with text features (no differentiable encoder) leaves no stale encoder from the first fit
    assert main(["--quiet", "fit", "--data", str(root), "--subject", "subj01", "--model", "open_clip:tiny-vit@random",
                 "--layer", "blocks.1", "--grid", "2", "--cv", "3", "--text-features",
                 "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    assert not list(out.glob("encoder.*")) and json.loads((out / "summary.json").read_text())["text_model"]


def test_fit_with_unknown_model_exits_2_with_message(root, tmp_path, capsys):
    status = main(["fit", "--data", str(root), "--subject", "subj01", "--model", "nosuch:model",
                   "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "o")])
    assert status == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_subject_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path), "--subject", "subj05", "--format", "algonauts"]) == 2
    assert "subj05" in capsys.readouterr().err
    assert main(["validate", str(tmp_path), "--subject", "subj05"]) == 2
    assert "cannot tell the layout" in capsys.readouterr().err


def test_every_subcommand_is_registered(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("validate", "fit", "demo", "run", "report", "bank", "caption", "train-decoder", "synthesize"):
        assert name in out


def test_fit_offers_banded_ridge_and_the_routing_presets(capsys):
    from braincode.commands.fit import PRESETS
    from braincode.encoding.readouts import ROUTING_PRESETS

    assert PRESETS == tuple(sorted(ROUTING_PRESETS))
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--banded" in out and "--preset" in out and "--format" in out
