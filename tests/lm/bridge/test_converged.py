"""The converged bridge (issue 5): online and offline IPO on the small GPT-2 land within total
variation 0.05 of the exact toy's prediction.

Oracle: the exact solvers (``pt.regularized_nash`` for online IPO, ``pt.ipo_optimum`` with
``nu = mu_class`` for offline IPO) run here on the bordered game built by hand and on the measured
``mu_class``; the trained policy's class distribution is estimated from 2000 fresh completions.
These are the README's runs (``lm.demo.bridge_settings``), about 3 minutes each on one core; the
small model is trained first when it is not cached (about 3 minutes). One thread: the run is then
bitwise reproducible on a given machine.
"""

from __future__ import annotations

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge.class_estimate import total_variation
from prefopt_toy.lm.bridge.demo import BRIDGE_P, BRIDGE_TAU, bridge_settings
from prefopt_toy.lm.bridge.error import tv_sampling_error
from prefopt_toy.lm.bridge.run import run_bridge

TARGET = 0.05  # the total-variation target


def _bordered() -> torch.Tensor:
    P = torch.full((4, 4), 0.5, dtype=torch.float64)
    P[:3, :3] = torch.tensor(BRIDGE_P, dtype=torch.float64)
    P[:3, 3], P[3, :3] = 1.0, 0.0  # every fruit beats "other" surely (other_loses = 1)
    return P


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["online_ipo", "ipo"])
def test_small_gpt2_lands_within_tv_005_of_the_exact_prediction(algorithm):
    s = bridge_settings(algorithm)
    res = run_bridge(
        algorithm,
        P=[list(r) for r in BRIDGE_P],
        tau=BRIDGE_TAU,
        size=s.size,
        steps=s.steps,
        lr=s.lr,
        batch_size=s.batch_size,
        n_eval_samples=s.n_eval_samples,
        n_eval=s.n_eval,
        eval_every=s.eval_every,
        n_pairs=s.n_pairs,
        max_new_tokens=s.max_new_tokens,
        toy_steps=10,
    )
    mu = res.mu_class.probs
    if algorithm == "online_ipo":
        expected = pt.regularized_nash(_bordered(), mu, BRIDGE_TAU)
    else:
        expected = pt.ipo_optimum(_bordered(), mu, BRIDGE_TAU, nu=mu)
    assert torch.allclose(res.prediction, expected, atol=1e-12)
    start = total_variation(mu, expected)
    tv = total_variation(res.final.probs, expected)
    err = tv_sampling_error(res)
    print(
        f"{algorithm}: TV {tv:.4f} (reference {start:.4f}; sampling floor {err.floor_mean:.4f}, "
        f"bootstrap {err.interval[0]:.4f}-{err.interval[1]:.4f}); {res.wall_s:.0f} s"
    )
    assert start > 2 * TARGET  # the prediction is far from where training starts
    assert tv <= TARGET
