"""Noise ceilings and the Algonauts score."""

import numpy as np
import pytest

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
