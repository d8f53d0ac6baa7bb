"""Noise ceilings, the Algonauts score, permutation p-values, FDR and ROI bootstrap CIs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from braincode.encoding import metrics as m
from braincode.errors import ConfigError, DataFormatError


def test_noise_ceiling_single_count_matches_formula():
    ncsnr = np.array([0.0, 0.5, 1.0, 2.0, np.nan])
    expected = ncsnr**2 / (ncsnr**2 + 1 / 3)
    np.testing.assert_allclose(m.noise_ceiling(ncsnr, 3), expected)
    assert m.noise_ceiling(ncsnr, 3).dtype == np.float64
    assert np.isnan(m.noise_ceiling(ncsnr, 3)[-1])


def test_noise_ceiling_mixed_repeats_as_algonauts():
    a, b, c = 700, 200, 100  # images with 3, 2 and 1 repeats
    counts = np.r_[np.full(a, 3), np.full(b, 2), np.full(c, 1)]
    inv_n = (a / 3 + b / 2 + c / 1) / (a + b + c)
    ncsnr = np.array([0.3, 0.8, 1.7])
    np.testing.assert_allclose(m.noise_ceiling(ncsnr, counts), ncsnr**2 / (ncsnr**2 + inv_n))
    # by hand for ncsnr = 0.8: 0.64 / (0.64 + 0.43333...)
    assert m.noise_ceiling([0.8], counts)[0] == pytest.approx(0.64 / (0.64 + 0.4333333333))


@pytest.mark.parametrize("bad", [0, -1, [3, 0], [], np.nan])
def test_noise_ceiling_rejects_bad_counts(bad):
    with pytest.raises(ConfigError, match="n_trials"):
        m.noise_ceiling([1.0], bad)


def test_normalized_score_by_hand():
    r = np.array([0.5, -0.3, 0.9, 0.2, 0.4, 0.1])
    nc = np.array([0.5, 0.4, 0.6, 0.0, np.nan, 0.02])
    # 100 * .25 / .5 = 50; negative r -> 0; .81/.6 -> capped 100; nc 0 / NaN -> no score; 100 * .01/.02 = 50
    expected = [50.0, 0.0, 100.0, np.nan, np.nan, 50.0]
    np.testing.assert_allclose(m.normalized_score(r, nc), expected)
    assert m.algonauts_score(r, nc) == pytest.approx((50 + 0 + 100 + 50) / 4)


def test_normalized_score_errors():
    with pytest.raises(DataFormatError, match="one value per voxel"):
        m.normalized_score([0.1, 0.2], [0.5])
    with pytest.raises(DataFormatError, match="positive noise ceiling"):
        m.algonauts_score([0.1], [0.0])


def _simulated_repeats(n_img=4000, n_rep=3, signal_sd=1.0, noise_sd=(0.5, 1.0, 2.0), seed=0):
    rng = np.random.default_rng(seed)
    noise_sd = np.asarray(noise_sd)
    signal = signal_sd * rng.standard_normal((n_img, 1, noise_sd.size))
    return signal + noise_sd * rng.standard_normal((n_img, n_rep, noise_sd.size)), signal_sd / noise_sd


def test_ncsnr_and_repeat_ceiling_recover_simulated_truth():
    trials, true_snr = _simulated_repeats()
    np.testing.assert_allclose(m.ncsnr_from_repeats(trials), true_snr, rtol=0.06)
    np.testing.assert_allclose(m.repeat_noise_ceiling(trials), true_snr**2 / (true_snr**2 + 1 / 3), atol=0.02)


def test_ncsnr_by_hand_and_missing_repeats():
    trials = np.array([[1.0, 3.0, np.nan], [2.0, 2.0, 5.0], [0.0, np.nan, np.nan]])[:, :, None]
    noise_var = np.mean([np.var([1, 3], ddof=1), np.var([2, 2, 5], ddof=1)])  # image 3 has one repeat
    total_var = np.var([1, 3, 2, 2, 5, 0], ddof=1)
    assert m.ncsnr_from_repeats(trials)[0] == pytest.approx(np.sqrt((total_var - noise_var) / noise_var))
    inv_n = (1 / 2 + 1 / 3 + 1 / 1) / 3
    snr2 = (total_var - noise_var) / noise_var
    assert m.repeat_noise_ceiling(trials)[0] == pytest.approx(snr2 / (snr2 + inv_n))


def test_repeats_must_be_3d():
    with pytest.raises(DataFormatError, match="n_repeats >= 2"):
        m.ncsnr_from_repeats(np.zeros((5, 3)))


def test_split_half_reliability_matches_ceiling():
    trials, true_snr = _simulated_repeats(n_rep=4)
    rel = m.split_half_reliability(trials, n_splits=5, random_state=0)
    np.testing.assert_allclose(rel, true_snr**2 / (true_snr**2 + 1 / 4), atol=0.03)
    again = m.split_half_reliability(trials, n_splits=5, random_state=0)
    np.testing.assert_array_equal(rel, again)


def test_permutation_pvalues_uniform_under_null():
    rng = np.random.default_rng(1)
    y, pred = rng.standard_normal((60, 2000)), rng.standard_normal((60, 2000))
    res = m.permutation_test(y, pred, n_permutations=999, random_state=0)
    np.testing.assert_allclose(res.r, m.pearson_r(y, pred))
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
    np.testing.assert_allclose(table["r"], m.pearson_r(y, pred))
    np.testing.assert_allclose(table["r2"], m.r2_score(y, pred))
    np.testing.assert_allclose(table["normalized_score"], m.normalized_score(table["r"], nc))
    np.testing.assert_allclose(table["qvalue"], m.fdr_correct(table["pvalue"])[0])
    assert table["significant"][:20].all() and table["significant"][20:].mean() < 0.2
    assert list(m.score_table(y, pred).columns) == ["r", "r2"]
