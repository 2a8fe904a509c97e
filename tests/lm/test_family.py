"""``prefopt_toy.lm.family``: hand-computed examples, input validation, finiteness, KTO's KL batch.

The expected values are worked out here with ``math`` / numpy from the papers' formulas, never by
calling the loss library. Parity with TRL 1.13 is in ``test_trl_parity_family.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prefopt_toy.lm.family import (
    CPO_METRIC_NAMES,
    KTO_METRIC_NAMES,
    ORPO_METRIC_NAMES,
    cpo_batch_loss,
    dpop_batch_loss,
    kto_batch_loss,
    kto_mismatched_completions,
    orpo_batch_loss,
    rdpo_batch_loss,
    sft_nll_from_logits,
)
from prefopt_toy.lm.objectives import METRIC_NAMES


def sigma(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def softplus(x: float) -> float:  # -log sigma(-x)
    return math.log1p(math.exp(x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-14)


# ---------------------------------------------------------------------------------------------
# hand-computed examples


def test_kto_hand_computed_trl_unclamped_and_supplied_reference_points():
    # r = (-1) - (-2) = 1 (desirable), (-3) - (-2) = -1 (undesirable);
    # mismatched log-ratios (-1) - (-1.5) = 0.5 and (-2) - (-1) = -1: mean -0.25.
    args = (t(-1.0, -3.0), t(-2.0, -2.0), t(-1.0, -2.0), t(-1.5, -1.0), [True, False])
    knobs = {"beta": 1.0, "desirable_weight": 2.0, "undesirable_weight": 0.5}

    losses, m = kto_batch_loss(*args, **knobs)  # TRL: z0 = max(0, -0.25) = 0
    assert losses.tolist() == [approx(2.0 * (1 - sigma(1.0))), approx(0.5 * (1 - sigma(1.0)))]
    assert set(m) == set(KTO_METRIC_NAMES)
    assert {k: float(v) for k, v in m.items()} == {
        "kl": 0.0,
        "rewards/chosen": approx(1.0),
        "logps/chosen": approx(-1.0),
        "rewards/rejected": approx(-1.0),
        "logps/rejected": approx(-3.0),
        "rewards/margins": approx(2.0),
    }

    losses, m = kto_batch_loss(*args, **knobs, reference_point="unclamped")  # z0 = -0.25
    expected = [2.0 * (1 - sigma(1.0 + 0.25)), 0.5 * (1 - sigma(-0.25 + 1.0))]
    assert losses.tolist() == [approx(e) for e in expected]
    assert float(m["kl"]) == approx(-0.25)

    losses, m = kto_batch_loss(*args[:2], None, None, args[4], **knobs, reference_point=0.6)
    expected = [2.0 * (1 - sigma(1.0 - 0.6)), 0.5 * (1 - sigma(0.6 + 1.0))]
    assert losses.tolist() == [approx(e) for e in expected]
    assert float(m["kl"]) == approx(0.6)


def test_kto_gradient_flows_into_the_policy_only():
    pol = t(-1.0, -3.0).requires_grad_(True)
    ref = t(-2.0, -2.0).requires_grad_(True)
    pkl = t(-1.0, -2.0).requires_grad_(True)
    losses, _ = kto_batch_loss(pol, ref, pkl, t(-2.0, -2.5), [1, 0], beta=1.0)
    losses.sum().backward()
    # z0 = max(0, mean(1, 0.5)) = 0.75; d/dr lambda (1 - sigma(r - z0)) = -sigma' for desirable
    s0, s1 = sigma(1.0 - 0.75), sigma(0.75 + 1.0)
    assert pol.grad.tolist() == [approx(-s0 * (1 - s0)), approx(s1 * (1 - s1))]
    assert ref.grad is None and pkl.grad is None


def test_kto_one_sided_batch_has_no_margin_metric():
    _, m = kto_batch_loss(t(-1.0, -2.0), t(-1.0, -1.0), None, None, [1, 1], beta=1.0,
                          reference_point=0.0)  # fmt: skip
    assert set(m) == {"kl", "rewards/chosen", "logps/chosen"}
    assert float(m["rewards/chosen"]) == approx(-0.5)


def test_orpo_hand_computed_with_the_papers_and_a_given_nll():
    # p_w = 1/2 (odds 1), p_l = 1/4 (odds 1/3): log odds ratio ln 3, term -log sigma(ln 3) = ln(4/3)
    w, lo = t(math.log(0.5)), t(math.log(0.25))
    losses, m = orpo_batch_loss(w, lo, None, lam=0.5)
    assert float(losses[0]) == approx(math.log(2.0) + 0.5 * math.log(4.0 / 3.0))
    assert set(m) == set(ORPO_METRIC_NAMES)
    assert float(m["log_odds_chosen"]) == approx(math.log(3.0))
    assert float(m["log_odds_ratio"]) == approx(math.log(0.75))
    assert float(m["nll_loss"]) == approx(math.log(2.0))
    assert float(m["rewards/chosen"]) == approx(0.5 * math.log(0.5))
    assert float(m["rewards/margins"]) == approx(0.5 * math.log(2.0))
    assert float(m["rewards/accuracies"]) == 1.0

    losses, m = orpo_batch_loss(t(math.log(0.5), math.log(0.5)), t(math.log(0.25), -1e-9), 0.7,
                                lam=0.5)  # fmt: skip
    # second pair: p_l ~ 1, log odds ~ -log(1e-9) = 20.72; term softplus(20.72 - 0)
    odds_l = -1e-9 - math.log(-math.expm1(-1e-9))
    assert losses.tolist() == [
        approx(0.7 + 0.5 * math.log(4.0 / 3.0)),
        pytest.approx(0.7 + 0.5 * softplus(odds_l), rel=1e-9),
    ]
    assert float(m["nll_loss"]) == approx(0.7)


def test_cpo_sigmoid_hand_computed():
    # CPO on sums: -log sigma(beta (s_w - s_l)) + alpha * nll
    losses, m = cpo_batch_loss(t(-3.0), t(-5.0), 0.4, loss_type="sigmoid", beta=0.5, cpo_alpha=2.0)
    assert float(losses[0]) == approx(softplus(-1.0) + 0.8)
    assert set(m) == set(CPO_METRIC_NAMES)
    assert float(m["nll_loss"]) == approx(0.4)
    assert float(m["rewards/margins"]) == approx(1.0)

    losses, _ = cpo_batch_loss(
        t(-3.0), t(-5.0), None, loss_type="sigmoid", beta=0.5, cpo_alpha=0.0, label_smoothing=0.1
    )
    assert float(losses[0]) == approx(0.9 * softplus(-1.0) + 0.1 * softplus(1.0))


def test_simpo_hand_computed_both_margin_conventions():
    # z = beta * (s_w - s_l) - gamma = 2 * 0.5 - 0.4
    common = {"loss_type": "simpo", "beta": 2.0, "cpo_alpha": 0.0}
    absolute, m = cpo_batch_loss(t(-1.0), t(-1.5), None, simpo_gamma=0.4, **common)
    ratio, _ = cpo_batch_loss(t(-1.0), t(-1.5), None, gamma_beta_ratio=0.2, **common)
    assert float(absolute[0]) == approx(softplus(-0.6))
    assert float(ratio[0]) == approx(softplus(-0.6))
    assert float(m["nll_loss"]) == 0.0  # TRL logs 0 when cpo_alpha == 0
    with_nll, m = cpo_batch_loss(
        t(-1.0), t(-1.5), t(0.25), simpo_gamma=0.4, **(common | {"cpo_alpha": 1.0})
    )
    assert float(with_nll[0]) == approx(softplus(-0.6) + 0.25)  # CPO-SimPO, TRL's default alpha


def test_rdpo_and_dpop_hand_computed():
    # h = (-2 + 3) - (-4 + 3) = 2
    losses, m = rdpo_batch_loss(t(-2.0), t(-4.0), t(-3.0), t(-3.0), beta=0.1, alpha=0.2,
                                chosen_lengths=[3], rejected_lengths=[5])  # fmt: skip
    assert float(losses[0]) == approx(softplus(-(0.1 * 2.0 + 0.2 * (3 - 5))))
    assert set(m) == set(METRIC_NAMES) and float(m["rewards/margins"]) == approx(0.2)

    # chosen fell 1 below the reference (penalty 1); h = (-4 + 3) - (-5 + 3) = 1
    args = (t(-4.0), t(-5.0), t(-3.0), t(-3.0))
    inside, _ = dpop_batch_loss(*args, beta=0.5, lam=2.0)
    outside, _ = dpop_batch_loss(*args, beta=0.5, lam=2.0, placement="outside")
    assert float(inside[0]) == approx(softplus(-(0.5 * (1.0 - 2.0 * 1.0))))
    assert float(outside[0]) == approx(softplus(-0.5) + 2.0)
    above, _ = dpop_batch_loss(t(-2.0), t(-5.0), t(-3.0), t(-3.0), beta=0.5, lam=2.0)
    # h = (-2 + 3) - (-5 + 3) = 3, and no penalty above the reference
    assert float(above[0]) == approx(softplus(-0.5 * 3.0))


def _nll_batch() -> dict[str, torch.Tensor]:
    logits = torch.tensor(
        [
            [[0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [9.0, 9.0, 9.0]],
            [[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0], [0.0, -2.0, 2.0]],
        ],
        dtype=torch.float64,
    )  # (2, 4, 3)
    return {
        "logits": logits,
        "input_ids": torch.tensor([[0, 1, 2, 0], [2, 0, 1, 2]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),  # right padding
        "completion_mask": torch.tensor([[0, 0, 1, 0], [0, 1, 1, 1]]),
    }


def test_sft_nll_hand_computed_conventions():
    b = _nll_batch()
    z = b["logits"].numpy()

    def nll(row: int, pos: int) -> float:  # -log p(input_ids[row, pos] | prefix)
        x = z[row, pos - 1]
        return float(np.log(np.exp(x).sum()) - x[int(b["input_ids"][row, pos])])

    whole = [nll(0, 1), nll(0, 2), nll(1, 1), nll(1, 2), nll(1, 3)]  # every predicted real token
    response = [[nll(0, 2)], [nll(1, 1), nll(1, 2), nll(1, 3)]]

    def run(tokens: str, reduction: str) -> torch.Tensor:
        return sft_nll_from_logits(**b, tokens=tokens, reduction=reduction)

    assert float(run("prompt_and_completion", "batch_token_mean")) == approx(np.mean(whole))
    assert float(run("completion", "batch_token_mean")) == approx(np.mean(sum(response, [])))
    per_row = run("completion", "per_example_mean")
    assert per_row.tolist() == [approx(np.mean(r)) for r in response]
    per_row_all = run("prompt_and_completion", "per_example_mean")
    assert per_row_all.tolist() == [approx(np.mean(whole[:2])), approx(np.mean(whole[2:]))]


# ---------------------------------------------------------------------------------------------
# KTO's mismatched batch


def test_mismatched_completions_rotate_within_each_batch():
    assert kto_mismatched_completions([1, 2, 3], batch_size=3) == [3, 1, 2]
    assert kto_mismatched_completions("abcdef", batch_size=3) == list("cabfde")
    assert kto_mismatched_completions([[1], [2, 3], [4], [5]], batch_size=2) == [
        [2, 3],
        [1],
        [5],
        [4],
    ]


@pytest.mark.parametrize(
    ("completions", "batch_size", "match"),
    [
        ([[1], [2]], 1, "batch_size must be an integer >= 2"),
        ([[1], [2]], 0, "batch_size"),
        ([[1], [2]], True, "batch_size"),
        ([[1], [2]], 2.0, "batch_size"),
        ([[1]], 2, "completions must hold at least 2"),
        ([], 4, "completions must hold at least 2"),
        ([[1], [2], [3]], 2, "completions: the last chunk"),
    ],
)
def test_mismatched_completions_refuse_a_batch_of_one(completions, batch_size, match):
    with pytest.raises(ValueError, match=match):
        kto_mismatched_completions(completions, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# validation: each bad input names its argument

GOOD_KTO = {
    "policy_logps": t(-1.0, -2.0),
    "ref_logps": t(-1.0, -1.5),
    "policy_kl_logps": t(-1.0, -2.0),
    "ref_kl_logps": t(-2.0, -1.0),
    "desirable": [True, False],
}


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"policy_logps": t(0.5, -1.0)}, "policy_logps"),
        ({"policy_logps": t(float("nan"), -1.0)}, "policy_logps"),
        ({"ref_logps": t(-1.0)}, "ref_logps"),
        ({"policy_kl_logps": t(-1.0, 1.0)}, "policy_kl_logps"),
        ({"ref_kl_logps": t(-1.0, -1.0, -1.0)}, "ref_kl_logps"),
        ({"desirable": [2, 0]}, "desirable"),
        ({"desirable": [True]}, "desirable"),
        ({"desirable": ["yes", "no"]}, "desirable"),
        ({"beta": 0.0}, "beta"),
        ({"beta": float("inf")}, "beta"),
        ({"desirable_weight": -1.0}, "desirable_weight"),
        ({"undesirable_weight": 0.0}, "undesirable_weight"),
        ({"reference_point": "paper"}, "reference_point"),
        ({"reference_point": True}, "reference_point"),
        (
            {"reference_point": float("nan"), "policy_kl_logps": None, "ref_kl_logps": None},
            "reference_point",
        ),  # fmt: skip
        ({"policy_kl_logps": None}, "policy_kl_logps"),
        ({"reference_point": 0.5}, "policy_kl_logps"),  # KL log-probs given with a number
    ],
)
def test_kto_bad_input_names_the_argument(change, name):
    kwargs = GOOD_KTO | {"beta": 0.1} | change
    with pytest.raises(ValueError, match=name):
        kto_batch_loss(**kwargs)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"chosen_avg_logps": t(0.0)}, "chosen_avg_logps"),
        ({"rejected_avg_logps": t(-0.0)}, "rejected_avg_logps"),
        ({"rejected_avg_logps": t(-1.0, -1.0)}, "rejected_avg_logps"),
        ({"chosen_avg_logps": torch.tensor([-1], dtype=torch.int64)}, "chosen_avg_logps"),
        ({"chosen_nll": -0.1}, "chosen_nll"),
        ({"chosen_nll": t(0.1, 0.2)}, "chosen_nll"),
        ({"chosen_nll": float("inf")}, "chosen_nll"),
        ({"lam": 0.0}, "lam"),
    ],
)
def test_orpo_bad_input_names_the_argument(change, name):
    kwargs = {"chosen_avg_logps": t(-1.0), "rejected_avg_logps": t(-2.0), "chosen_nll": None}
    with pytest.raises(ValueError, match=name):
        orpo_batch_loss(**(kwargs | {"lam": 0.1} | change))


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"loss_type": "hinge"}, "loss_type"),
        ({"chosen_logps": t(1.0)}, "chosen_logps"),
        ({"rejected_logps": t(-1.0, -2.0)}, "rejected_logps"),
        ({"beta": -1.0}, "beta"),
        ({"cpo_alpha": -0.5}, "cpo_alpha"),
        ({"cpo_alpha": 1.0}, "chosen_nll"),  # the NLL is required with cpo_alpha > 0
        ({"chosen_nll": -1.0}, "chosen_nll"),
        ({"simpo_gamma": None}, "simpo_gamma"),  # SimPO needs a margin, stated
        ({"simpo_gamma": -0.1}, "simpo_gamma"),
        ({"gamma_beta_ratio": -0.1, "simpo_gamma": None}, "gamma_beta_ratio"),
        ({"gamma_beta_ratio": 0.5}, "gamma_beta_ratio"),  # both margins
        ({"loss_type": "sigmoid"}, "simpo_gamma"),  # a margin with "sigmoid"
        ({"label_smoothing": 0.5}, "label_smoothing"),
    ],
)
def test_cpo_bad_input_names_the_argument(change, name):
    kwargs = {
        "chosen_logps": t(-1.0),
        "rejected_logps": t(-2.0),
        "chosen_nll": None,
        "loss_type": "simpo",
        "beta": 2.0,
        "cpo_alpha": 0.0,
        "simpo_gamma": 0.5,
    }
    with pytest.raises(ValueError, match=name):
        cpo_batch_loss(**(kwargs | change))


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"beta": 0.0}, "beta"),
        ({"alpha": -1.0}, "alpha"),
        ({"chosen_lengths": [0]}, "chosen_lengths"),
        ({"rejected_lengths": [1, 2]}, "rejected_lengths"),
        ({"policy_chosen_logps": t(0.1)}, "policy_chosen_logps"),
        ({"ref_rejected_logps": t(-1.0, -1.0)}, "ref_rejected_logps"),
    ],
)
def test_rdpo_bad_input_names_the_argument(change, name):
    kwargs = {
        "policy_chosen_logps": t(-1.0),
        "policy_rejected_logps": t(-2.0),
        "ref_chosen_logps": t(-1.0),
        "ref_rejected_logps": t(-1.0),
        "beta": 0.1,
        "alpha": 0.1,
        "chosen_lengths": [2],
        "rejected_lengths": [3],
    }
    with pytest.raises(ValueError, match=name):
        rdpo_batch_loss(**(kwargs | change))


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"placement": "middle"}, "placement"),
        ({"lam": -1.0}, "lam"),
        ({"beta": float("nan")}, "beta"),
        ({"ref_chosen_logps": t(2.0)}, "ref_chosen_logps"),
    ],
)
def test_dpop_bad_input_names_the_argument(change, name):
    kwargs = {
        "policy_chosen_logps": t(-1.0),
        "policy_rejected_logps": t(-2.0),
        "ref_chosen_logps": t(-1.0),
        "ref_rejected_logps": t(-1.0),
        "beta": 0.1,
        "lam": 50.0,
    }
    with pytest.raises(ValueError, match=name):
        dpop_batch_loss(**(kwargs | change))


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"tokens": "all"}, "tokens"),
        ({"reduction": "sum"}, "reduction"),
        ({"attention_mask": None}, "attention_mask"),
        ({"completion_mask": torch.zeros(2, 4, dtype=torch.long)}, "completion_mask"),
        ({"logits": torch.zeros(2, 3, 3)}, "logits"),
    ],
)
def test_sft_nll_bad_input_names_the_argument(change, name):
    kwargs = _nll_batch() | {"tokens": "completion", "reduction": "batch_token_mean"}
    with pytest.raises(ValueError, match=name):
        sft_nll_from_logits(**(kwargs | change))


# ---------------------------------------------------------------------------------------------
# finiteness far out


def _far(dtype: torch.dtype, *values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).requires_grad_(True)


FAR_W = (-1e4, -1e-3, -5e3, -1.0)
FAR_L = (-1e-3, -1e4, -1.0, -5e3)


def _assert_finite(losses: torch.Tensor, metrics: dict, *inputs: torch.Tensor) -> None:
    assert bool(torch.isfinite(losses.float()).all())
    assert all(bool(torch.isfinite(v.float()).all()) for v in metrics.values())
    losses.float().sum().backward()
    for x in inputs:
        assert x.grad is not None and bool(torch.isfinite(x.grad.float()).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_loss_is_finite_at_logps_up_to_1e4(dtype):
    pol, ref = _far(dtype, *FAR_W), torch.tensor(FAR_L, dtype=dtype)
    for point in ("trl", "unclamped"):
        p = _far(dtype, *FAR_W)
        losses, m = kto_batch_loss(p, ref, torch.tensor(FAR_L, dtype=dtype),
                                   torch.tensor(FAR_W, dtype=dtype), [1, 0, 1, 0], beta=1.0,
                                   reference_point=point)  # fmt: skip
        _assert_finite(losses, m, p)
    losses, m = kto_batch_loss(pol, ref, None, None, [0, 1, 0, 1], beta=0.1, reference_point=1e4)
    _assert_finite(losses, m, pol)

    w, lo = _far(dtype, *FAR_W), _far(dtype, *FAR_L)
    losses, m = orpo_batch_loss(w, lo, None, lam=1.0)
    _assert_finite(losses, m, w, lo)

    for loss_type, margin in (("simpo", {"simpo_gamma": 0.5}), ("sigmoid", {})):
        w, lo = _far(dtype, *FAR_W), _far(dtype, *FAR_L)
        nll = torch.tensor(1e4, dtype=dtype)
        losses, m = cpo_batch_loss(w, lo, nll, loss_type=loss_type, beta=1.0, cpo_alpha=1.0,
                                   **margin)  # fmt: skip
        _assert_finite(losses, m, w, lo)

    pc, pr = _far(dtype, *FAR_W), _far(dtype, *FAR_L)
    refs = (torch.tensor(FAR_L, dtype=dtype), torch.tensor(FAR_W, dtype=dtype))
    losses, m = rdpo_batch_loss(pc, pr, *refs, beta=1.0, alpha=1.0, chosen_lengths=[1, 9, 2, 7],
                                rejected_lengths=[8, 1, 3, 1])  # fmt: skip
    _assert_finite(losses, m, pc, pr)
    for placement in ("inside", "outside"):
        pc, pr = _far(dtype, *FAR_W), _far(dtype, *FAR_L)
        losses, m = dpop_batch_loss(pc, pr, *refs, beta=1.0, lam=50.0, placement=placement)
        _assert_finite(losses, m, pc, pr)
