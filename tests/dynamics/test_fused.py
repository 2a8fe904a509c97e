"""``redraw`` runs the core algorithms as rows of one batch; each row must equal its own registry call.

The oracle is the registry: ``ALGORITHMS[name](P, mu, steps=..., tau=...)`` computed separately, by
each algorithm's own code path (Nash-MD's closed-form mirror step in its actions-first layout,
the preference losses one at a time, RLHF's own loop).
"""

from __future__ import annotations

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.dynamics.fused import CORE, redraw

GAMES = {
    "three_voter_types": (pt.three_voter_types(0.1), [0.5, 0.3, 0.2]),
    "random5": (pt.random_game(5, seed=3), [0.1, 0.2, 0.3, 0.25, 0.15]),
}


@pytest.mark.parametrize("game", sorted(GAMES))
@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_every_row_equals_the_registry_call(game, tau):
    P, mu = GAMES[game]
    fused = redraw(P, mu, tau=tau, steps=300, mixture=0.25)
    assert set(fused) == set(CORE)
    for name in CORE:
        kwargs = {"mixture": 0.25} if name == "ipo_md" else {}
        ref = pt.ALGORITHMS[name](P, mu, steps=300, tau=tau, **kwargs)
        assert torch.allclose(fused[name].log_policies, ref.log_policies, atol=1e-12, rtol=0), name
        if ref.losses is None:
            assert fused[name].losses is None, name
        else:
            assert torch.allclose(fused[name].losses, ref.losses, atol=1e-12, rtol=1e-12), name


def test_targets_work_on_fused_rows():
    P, mu = GAMES["three_voter_types"]
    out = redraw(P, mu, tau=0.1, steps=3000)
    assert float(out["online_ipo"].distance_to("regularized_nash")[-1]) < 1e-10
    assert float(out["dpo"].distance_to("rlhf_optimum")[-1]) < 1e-10
    assert float(out["ipo_md"].distance_to("ipo_md_fixed_point")[-1]) < 1e-10


def test_subset_and_bad_input():
    P, mu = GAMES["three_voter_types"]
    out = redraw(P, mu, tau=0.1, steps=5, names=("nash_md", "rlhf"))
    assert set(out) == {"nash_md", "rlhf"}
    with pytest.raises(ValueError, match="names"):
        redraw(P, mu, names=("adam",))
    with pytest.raises(ValueError, match="tau"):
        redraw(P, mu, tau=0.0)
    with pytest.raises(ValueError, match="mixture"):
        redraw(P, mu, mixture=1.5)


def test_results_are_ordinary_tensors():
    # The loop runs in inference mode; what it returns must still work with autograd downstream.
    P, mu = GAMES["three_voter_types"]
    out = redraw(P, mu, tau=0.1, steps=4)
    weight = torch.ones(3, dtype=torch.float64, requires_grad=True)
    for name in CORE:
        assert not out[name].log_policies.is_inference(), name
    (out["nash_md"].log_policies * weight).sum().backward()
    assert torch.equal(weight.grad, out["nash_md"].log_policies.sum(0))


def test_zero_steps_and_row_order():
    P, mu = GAMES["three_voter_types"]
    out = redraw(P, mu, steps=0, names=("rlhf", "dpo"))
    assert list(out) == ["rlhf", "dpo"]  # the caller's order, whatever the internal row order
    for traj in out.values():
        assert traj.log_policies.shape == (1, 3) and traj.losses is None
