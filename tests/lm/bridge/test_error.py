"""The bridge's sampling error (``prefopt_toy.lm.bridge.error``).

Oracles: with the prediction held fixed, the floor's mean is
``0.5 * sum_k E|X_k / n - p_k|`` with ``X_k ~ Binomial(n, p_k)``, summed here over the binomial
probabilities (``math.comb``), independent of the bootstrap's multinomial draws. The bootstrap
interval must contain the observed TV when the estimate is far from the prediction, and shrink as
the sample sizes grow.
"""

from __future__ import annotations

import math

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge.class_estimate import class_estimate
from prefopt_toy.lm.bridge.error import TVError, tv_sampling_error
from prefopt_toy.lm.bridge.run import BridgeResult

P = [[0.5, 0.9, 0.1, 1.0], [0.1, 0.5, 0.9, 1.0], [0.9, 0.1, 0.5, 1.0], [0.0, 0.0, 0.0, 0.5]]
TAU = 0.25


def _estimate(probs, n):
    counts = [round(p * n) for p in probs]
    counts[0] += n - sum(counts)
    ids = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    return class_estimate(ids, 4, class_names=("apple", "banana", "cherry", "other"))


def _result(mu, final, n_mu, n_final):
    mu_est, fin = _estimate(mu, n_mu), _estimate(final, n_final)
    P_ext = torch.tensor(P, dtype=torch.float64)
    pred = pt.regularized_nash(P_ext, mu_est.probs, TAU)
    return BridgeResult(
        algorithm="online_ipo",
        class_names=mu_est.class_names,
        P_ext=P_ext,
        hyper={"tau": TAU, "mixture": 0.0},
        mu_class=mu_est,
        prediction=pred,
        toy_trajectory=None,
        steps=[],
        measured=torch.zeros(0, 4, dtype=torch.float64),
        final=fin,
        tv=0.5 * float((fin.probs - pred).abs().sum()),
    )


def _expected_abs_deviation(n: int, p: float) -> float:
    """E|X/n - p| for X ~ Binomial(n, p), by summing the probabilities."""
    return sum(math.comb(n, x) * p**x * (1 - p) ** (n - x) * abs(x / n - p) for x in range(n + 1))


def test_floor_mean_equals_the_binomial_sum_when_the_prediction_is_fixed():
    res = _result([0.45, 0.33, 0.17, 0.05], [0.47, 0.25, 0.27, 0.01], n_mu=2000, n_final=200)
    err = tv_sampling_error(res, n_boot=20000, resample_mu=False, seed=3)
    exact = 0.5 * sum(_expected_abs_deviation(200, float(p)) for p in res.prediction)
    # Monte Carlo standard error of a mean of 20000 TVs (sd < 0.03) is < 2.2e-4
    assert err.floor_mean == pytest.approx(exact, abs=1e-3)
    assert err.floor_upper > err.floor_mean
    assert isinstance(err, TVError) and err.n_boot == 20000


def test_resampling_mu_raises_the_floor():
    res = _result([0.45, 0.33, 0.17, 0.05], [0.47, 0.25, 0.27, 0.01], n_mu=300, n_final=2000)
    fixed = tv_sampling_error(res, n_boot=2000, resample_mu=False, seed=1)
    full = tv_sampling_error(res, n_boot=2000, resample_mu=True, seed=1)
    assert full.floor_mean > fixed.floor_mean + 0.005


def test_interval_brackets_a_large_tv_and_shrinks_with_more_samples():
    small = _result([0.45, 0.33, 0.17, 0.05], [0.25, 0.25, 0.45, 0.05], n_mu=500, n_final=500)
    big = _result([0.45, 0.33, 0.17, 0.05], [0.25, 0.25, 0.45, 0.05], n_mu=20000, n_final=20000)
    e_small, e_big = tv_sampling_error(small, seed=0), tv_sampling_error(big, seed=0)
    for res, err in ((small, e_small), (big, e_big)):
        assert err.tv == pytest.approx(res.tv)
        assert err.interval[0] <= err.tv <= err.interval[1]
        assert err.floor_upper < err.interval[0]  # far from the prediction: beyond sampling error
    assert (e_big.interval[1] - e_big.interval[0]) < 0.3 * (
        e_small.interval[1] - e_small.interval[0]
    )


def test_bad_input():
    res = _result([0.45, 0.33, 0.17, 0.05], [0.47, 0.25, 0.27, 0.01], n_mu=100, n_final=100)
    with pytest.raises(ValueError, match="result must be a BridgeResult"):
        tv_sampling_error({"tv": 0.1})
    with pytest.raises(ValueError, match="n_boot"):
        tv_sampling_error(res, n_boot=5)
    with pytest.raises(ValueError, match="level"):
        tv_sampling_error(res, level=1.0)
