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
