"""The statistics against scipy and closed forms on known data."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from musiq import metrics


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    label = rng.uniform(0, 100, 200)
    pred = 3.0 + 0.05 * label + rng.normal(0, 0.8, 200)  # another scale, noisy, monotonic
    return pred, label


def test_correlations_equal_scipy(data):
    pred, label = data
    assert metrics.srcc(pred, label) == pytest.approx(stats.spearmanr(pred, label)[0], abs=1e-12)
    assert metrics.krcc(pred, label) == pytest.approx(stats.kendalltau(pred, label)[0], abs=1e-12)
    assert metrics.plcc(pred, label) == pytest.approx(stats.pearsonr(pred, label)[0], abs=1e-12)
    assert metrics.rmse(pred, label) == pytest.approx(np.sqrt(np.mean((pred - label) ** 2)))


def test_known_values():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert metrics.srcc(x, x ** 3) == pytest.approx(1.0)
    assert metrics.srcc(x, -x) == pytest.approx(-1.0)
    assert metrics.krcc(x, [1, 3, 2, 4, 5]) == pytest.approx(0.8)  # 1 discordant pair of 10
    assert metrics.rmse(x, x + 2.0) == pytest.approx(2.0)
    assert np.isnan(metrics.plcc(x, np.ones(5)))


def test_logistic_recovers_known_curve():
    x = np.linspace(-3, 3, 60)
    true = (80.0, 10.0, 0.5, 0.7)
    fit = metrics.fit_logistic(x, metrics.logistic4(x, *true))
    assert fit.kind == "logistic"
    assert np.abs(fit(x) - metrics.logistic4(x, *true)).max() < 1e-3
    # decreasing data: the fit is decreasing too
    fit = metrics.fit_logistic(x, -metrics.logistic4(x, *true))
    assert np.all(np.diff(fit(x)) <= 1e-9)


def test_agreement_logistic_improves_plcc_and_intervals_cover(data):
    pred, label = data
    curved = np.exp(pred)  # monotonic but nonlinear: ranks unchanged, raw PLCC lower
    r = metrics.agreement(curved, label, bootstrap=300, seed=1)
    assert r["n"] == 200
    assert r["srcc"] == pytest.approx(stats.spearmanr(pred, label)[0])
    assert r["plcc_logistic"] > r["plcc"]
    assert r["rmse_logistic"] < r["rmse"]
    for key in metrics.STATISTICS:
        lo, hi = r["ci"][key]
        assert lo <= r[key] <= hi, key
    assert r["ci"]["srcc"][1] - r["ci"]["srcc"][0] < 0.1
    # the same seed gives the same intervals
    assert metrics.agreement(curved, label, bootstrap=300, seed=1)["ci"] == r["ci"]


def test_agreement_rejects_bad_input():
    with pytest.raises(ValueError):
        metrics.agreement([1.0], [2.0])
    with pytest.raises(ValueError):
        metrics.agreement([1.0, 2.0], [1.0, 2.0, 3.0])


def test_emd_known_values():
    p = np.array([1.0, 0, 0, 0])
    q = np.array([0, 0, 0, 1.0])
    # CDFs differ by 1 in the first three bins of four
    assert metrics.emd(p, q, r=1) == pytest.approx(3 / 4)
    assert metrics.emd(p, q, r=2) == pytest.approx(np.sqrt(3 / 4))
    assert metrics.emd(p, p) == 0.0
    counts = np.array([[2, 4, 2, 0], [1, 1, 1, 1]])  # vote counts are normalised
    assert metrics.emd(counts, counts / counts.sum(1, keepdims=True)).tolist() == [0.0, 0.0]
    # agrees with scipy's Wasserstein distance for r = 1 (bins of width 1, divided by K)
    rng = np.random.default_rng(0)
    a, b = rng.random(10), rng.random(10)
    w = stats.wasserstein_distance(np.arange(10), np.arange(10), a, b)
    assert metrics.emd(a, b, r=1) == pytest.approx(w / 10)
