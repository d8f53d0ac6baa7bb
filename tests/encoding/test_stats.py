"""Permutation p-values, FDR, ROI bootstrap CIs and the per-voxel score table."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from braincode.encoding import metrics
from braincode.encoding import stats as m
from braincode.errors import ConfigError, DataFormatError


def test_permutation_pvalues_uniform_under_null():
    rng = np.random.default_rng(1)
    y, pred = rng.standard_normal((60, 2000)), rng.standard_normal((60, 2000))
    res = m.permutation_test(y, pred, n_permutations=999, random_state=0)
    np.testing.assert_allclose(res.r, metrics.pearson_r(y, pred))
    assert stats.kstest(res.pvalue, "uniform").pvalue > 0.01
    assert 0.03 < np.mean(res.pvalue <= 0.05) < 0.07


def test_permutation_detects_real_effects_and_two_sided():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((80, 50))
    pred = y + rng.standard_normal((80, 50))  # r about 0.7
    res = m.permutation_test(y, pred, n_permutations=499, random_state=0)
    assert np.all(res.pvalue <= 0.01)
    neg = m.permutation_test(y, -pred, n_permutations=499, alternative="two-sided", random_state=0)
    assert np.all(neg.pvalue <= 0.01)
    assert np.all(m.permutation_test(y, -pred, n_permutations=99, random_state=0).pvalue > 0.9)


def test_permutation_is_seeded():
    rng = np.random.default_rng(3)
    y, pred = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
    a = m.permutation_test(y, pred, n_permutations=50, random_state=7).pvalue
    np.testing.assert_array_equal(a, m.permutation_test(y, pred, n_permutations=50, random_state=7).pvalue)


def _ar1(rng, n, v, phi=0.95):
    x = np.zeros((n, v))
    x[0] = rng.standard_normal(v)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal(v)
    return x


def test_block_permutation_controls_false_positives_for_autocorrelated_samples():
    rng = np.random.default_rng(4)
    y, pred = _ar1(rng, 200, 400), _ar1(rng, 200, 400)  # independent, but smooth in time
    plain = m.permutation_test(y, pred, n_permutations=199, random_state=0).pvalue
    blocked = m.permutation_test(y, pred, n_permutations=199, block_size=20, random_state=0).pvalue
    assert np.mean(plain <= 0.05) > 0.3  # ordinary shuffling is badly anti-conservative here
    assert np.mean(blocked <= 0.05) < np.mean(plain <= 0.05) / 2


def test_permutation_bad_input():
    with pytest.raises(DataFormatError, match="same 2-D shape"):
        m.permutation_test(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ConfigError, match="alternative"):
        m.permutation_test(np.zeros((5, 2)), np.zeros((5, 2)), alternative="less")


def test_fdr_matches_scipy_and_keeps_nan():
    rng = np.random.default_rng(5)
    p = np.r_[rng.uniform(size=90), rng.uniform(0, 1e-3, size=10), np.nan]
    q, sig = m.fdr_correct(p, alpha=0.05)
    np.testing.assert_allclose(q[:-1], stats.false_discovery_control(p[:-1]))
    assert np.isnan(q[-1]) and not sig[-1]
    assert sig[90:100].all()
    with pytest.raises(DataFormatError, match=r"\[0, 1\]"):
        m.fdr_correct([0.5, 1.5])


def test_roi_bootstrap_ci():
    rng = np.random.default_rng(6)
    vox = pd.DataFrame(
        {
            "hemisphere": ["lh"] * 600,
            "vertex": np.arange(600),
            "prf-visualrois": ["V1v"] * 300 + ["hV4"] * 200 + [""] * 100,
        }
    )
    scores = np.r_[rng.normal(10, 2, 300), rng.normal(30, 5, 200), rng.normal(99, 1, 100)]
    scores[0] = np.nan
    table = m.roi_bootstrap_ci(scores, vox, "prf-visualrois", n_bootstrap=2000, random_state=0)
    assert table["roi"].tolist() == ["V1v", "hV4"]
    assert table["n_voxels"].tolist() == [299, 200]
    v1 = table.iloc[0]
    assert v1["mean"] == pytest.approx(np.nanmean(scores[:300]))
    se = np.nanstd(scores[:300]) / np.sqrt(299)
    assert v1["ci_low"] == pytest.approx(v1["mean"] - 1.96 * se, abs=0.25 * se)
    assert v1["ci_high"] == pytest.approx(v1["mean"] + 1.96 * se, abs=0.25 * se)
    again = m.roi_bootstrap_ci(scores, vox, "prf-visualrois", n_bootstrap=2000, random_state=0)
    pd.testing.assert_frame_equal(table, again)
    with pytest.raises(DataFormatError, match="no such ROI family"):
        m.roi_bootstrap_ci(scores, vox, "floc-faces")
    with pytest.raises(DataFormatError, match="one score per voxel"):
        m.roi_bootstrap_ci(scores[:10], vox, "prf-visualrois")


def test_roi_bootstrap_ci_several_families():
    vox = pd.DataFrame(
        {
            "hemisphere": ["lh", "lh", "rh", "rh"],
            "vertex": range(4),
            "streams": ["early", "early", "ventral", ""],
        }
    )
    table = m.roi_bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0]), vox, ["hemisphere", "streams"], random_state=0)
    assert table[["family", "roi", "mean"]].values.tolist() == [
        ["hemisphere", "lh", 1.5],
        ["hemisphere", "rh", 3.5],
        ["streams", "early", 1.5],
        ["streams", "ventral", 3.0],
    ]


def test_score_table_combines_the_statistics():
    rng = np.random.default_rng(7)
    y = rng.standard_normal((120, 40))
    pred = np.c_[y[:, :20] + rng.standard_normal((120, 20)), rng.standard_normal((120, 20))]
    nc = np.full(40, 0.6)
    table = m.score_table(y, pred, noise_ceiling=nc, n_permutations=199, random_state=0)
    np.testing.assert_allclose(table["r"], metrics.pearson_r(y, pred))
    np.testing.assert_allclose(table["r2"], metrics.r2_score(y, pred))
    np.testing.assert_allclose(table["normalized_score"], metrics.normalized_score(table["r"], nc))
    np.testing.assert_allclose(table["qvalue"], m.fdr_correct(table["pvalue"])[0])
    assert table["significant"][:20].all() and table["significant"][20:].mean() < 0.2
    assert list(m.score_table(y, pred).columns) == ["r", "r2"]
