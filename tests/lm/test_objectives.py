"""prefopt_toy.lm.objectives: sequence log-probs -> the exact toy's per-pair losses and TRL's metrics.

Every value is checked against a hand computation with ``math`` on Python floats (the formulas of
Rafailov et al. Eq. 7, Azar et al. Eq. 17, the hinge, rDPO as in TRL 1.13), never against the
module's own output. TRL itself is compared in tests/lm/test_trl_parity.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from prefopt_toy.lm.objectives import (
    LOSSES,
    METRIC_NAMES,
    TRL_LOSS_TYPES,
    preference_loss,
    preference_metrics,
)

# Four (B,) = (3,) vectors of sequence log-probs (sums over completion tokens), chosen so the
# margins h = (pc - rc) - (pr - rr) are 2.5, 0.25 and -0.5: both signs, one past the SLiC hinge
# at beta = 0.5.
PC = [-3.0, -10.0, -7.5]
PR = [-6.0, -8.0, -7.0]
RC = [-5.0, -9.5, -7.25]
RR = [-5.5, -7.25, -7.25]


def _hand_margins() -> list[float]:
    return [(pc - rc) - (pr - rr) for pc, pr, rc, rr in zip(PC, PR, RC, RR, strict=True)]


def _neg_log_sigmoid(x: float) -> float:
    return -math.log(1.0 / (1.0 + math.exp(-x)))


def _hand_loss(name: str, h: float, k: float, eps: float = 0.0) -> float:
    """The per-pair losses written from their papers' formulas (k is beta, or tau for IPO)."""
    if name == "dpo":
        return (1 - eps) * _neg_log_sigmoid(k * h) + eps * _neg_log_sigmoid(-k * h)
    if name == "ipo":
        return (h - 1.0 / (2.0 * k)) ** 2
    if name == "slic":
        return max(0.0, 1.0 - k * h)
    if name == "robust_dpo":
        return ((1 - eps) * _neg_log_sigmoid(k * h) - eps * _neg_log_sigmoid(-k * h)) / (
            1 - 2 * eps
        )
    if name == "gpo_squared":
        return (k * h - 1.0) ** 2
    if name == "gpo_exponential":
        return math.exp(-k * h)
    raise AssertionError(name)


def _t(values: list[float], dtype: torch.dtype = torch.float64, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


def _knob(name: str, k: float) -> dict[str, float]:
    return {"tau": k} if name == "ipo" else {"beta": k}


def test_hand_margins_cover_both_signs():
    assert _hand_margins() == [2.5, 0.25, -0.5]


@pytest.mark.parametrize(
    ("name", "k", "eps"),
    [
        ("dpo", 0.1, 0.0),
        ("dpo", 1.0, 0.0),
        ("dpo", 0.5, 0.2),  # cDPO
        ("ipo", 0.25, 0.0),
        ("ipo", 1.0, 0.0),
        ("slic", 0.5, 0.0),
        ("robust_dpo", 0.5, 0.1),
        ("gpo_squared", 0.5, 0.0),
        ("gpo_exponential", 0.5, 0.0),
    ],
)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_losses_equal_hand_formulas(name, k, eps, dtype, tol):
    kwargs = _knob(name, k)
    if eps:
        kwargs["label_smoothing"] = eps
    losses, _ = preference_loss(
        _t(PC, dtype),
        _t(PR, dtype),
        _t(RC, dtype),
        _t(RR, dtype),
        loss=name,
        reduction="sum",
        **kwargs,
    )
    assert losses.shape == (3,)
    assert losses.dtype == dtype
    expected = [_hand_loss(name, h, k, eps) for h in _hand_margins()]
    assert losses.tolist() == pytest.approx(expected, rel=tol, abs=tol)


@pytest.mark.parametrize(("name", "k"), [("dpo", 0.1), ("ipo", 0.25)])
def test_metrics_equal_trl_definitions_by_hand(name, k):
    _, metrics = preference_loss(
        _t(PC), _t(PR), _t(RC), _t(RR), loss=name, reduction="sum", **_knob(name, k)
    )
    assert tuple(metrics) == METRIC_NAMES
    reward_w = [k * (pc - rc) for pc, rc in zip(PC, RC, strict=True)]  # [2k, -0.5k, -0.25k]
    reward_l = [k * (pr - rr) for pr, rr in zip(PR, RR, strict=True)]  # [-0.5k, -0.75k, 0.25k]
    expected = {
        "rewards/chosen": sum(reward_w) / 3,
        "rewards/rejected": sum(reward_l) / 3,
        "rewards/margins": sum(w - l for w, l in zip(reward_w, reward_l, strict=True)) / 3,
        "rewards/accuracies": 2 / 3,  # margins 2.5 and 0.25 are positive, -0.5 is not
        "logps/chosen": sum(PC) / 3,
        "logps/rejected": sum(PR) / 3,
    }
    for key, value in expected.items():
        assert metrics[key].ndim == 0
        assert not metrics[key].requires_grad
        assert float(metrics[key]) == pytest.approx(value, rel=1e-14, abs=1e-14), key


def test_accuracy_counts_ties_as_wrong():
    # Two pairs with margin exactly 0 and one with margin 1: TRL's (chosen > rejected) gives 1/3.
    m = preference_metrics(
        [-1.0, -2.0, -1.0], [-1.0, -2.0, -2.0], [-3.0] * 3, [-3.0] * 3, scale=1.0
    )
    assert float(m["rewards/accuracies"]) == pytest.approx(1 / 3)


def test_preference_metrics_matches_loss_metrics_scale():
    m = preference_metrics(PC, PR, RC, RR, scale=0.3)
    expected = 0.3 * sum(_hand_margins()) / 3
    assert float(m["rewards/margins"]) == pytest.approx(expected, rel=1e-14)


# ---------------------------------------------------------------------------- soft labels


@pytest.mark.parametrize(("name", "k"), [("dpo", 0.5), ("ipo", 0.25), ("slic", 0.5)])
@pytest.mark.parametrize("w", [1.0, 0.0, 0.5, 0.8])
def test_soft_labels_weight_both_orders(name, k, w):
    losses, _ = preference_loss(
        _t(PC), _t(PR), _t(RC), _t(RR), loss=name, reduction="sum", label_weight=w, **_knob(name, k)
    )
    expected = [
        w * _hand_loss(name, h, k) + (1 - w) * _hand_loss(name, -h, k) for h in _hand_margins()
    ]
    assert losses.tolist() == pytest.approx(expected, rel=1e-13, abs=1e-13)


def test_soft_label_zero_is_the_swapped_pair():
    swapped, _ = preference_loss(
        _t(PR), _t(PC), _t(RR), _t(RC), loss="dpo", beta=0.5, reduction="sum"
    )
    soft, _ = preference_loss(
        _t(PC), _t(PR), _t(RC), _t(RR), loss="dpo", beta=0.5, reduction="sum", label_weight=0.0
    )
    hard, _ = preference_loss(_t(PC), _t(PR), _t(RC), _t(RR), loss="dpo", beta=0.5, reduction="sum")
    assert torch.allclose(soft, swapped, rtol=1e-14, atol=0)
    assert not torch.allclose(soft, hard)


def test_soft_label_per_pair_tensor():
    w = [1.0, 0.0, 0.5]
    losses, _ = preference_loss(
        _t(PC), _t(PR), _t(RC), _t(RR), loss="ipo", tau=0.25, reduction="sum", label_weight=_t(w)
    )
    expected = [
        wi * _hand_loss("ipo", h, 0.25) + (1 - wi) * _hand_loss("ipo", -h, 0.25)
        for wi, h in zip(w, _hand_margins(), strict=True)
    ]
    assert losses.tolist() == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("w", [0.9, 0.5, 0.2])
def test_soft_ipo_is_stationary_at_the_online_ipo_target(w):
    # Calandriello et al.: the online-IPO margin target is (p - 1/2) / tau = (2w - 1) / (2 tau).
    tau = 0.25
    target = (2 * w - 1) / (2 * tau)
    pc = torch.tensor([-3.0 + target], dtype=torch.float64, requires_grad=True)
    losses, _ = preference_loss(
        pc, _t([-3.0]), _t([-3.0]), _t([-3.0]), loss="ipo", tau=tau, reduction="sum", label_weight=w
    )
    (grad,) = torch.autograd.grad(losses.sum(), pc)
    assert abs(float(grad)) < 1e-12


# --------------------------------------------------------------------- sum versus mean


def test_mean_reduction_is_the_loss_on_per_token_averages():
    # Per-token log-probs of each completion (lengths 2, 4, 1 chosen; 3, 1, 2 rejected).
    tok_pc = [[-1.0, -2.0], [-2.0, -1.0, -4.0, -3.0], [-7.5]]
    tok_pr = [[-2.0, -2.5, -1.5], [-8.0], [-3.0, -4.0]]
    tok_rc = [[-2.5, -2.5], [-2.0, -2.5, -2.5, -2.5], [-7.25]]
    tok_rr = [[-2.0, -2.0, -1.5], [-7.25], [-3.5, -3.75]]
    len_w = [len(t) for t in tok_pc]
    len_l = [len(t) for t in tok_pr]
    sums = [[sum(t) for t in toks] for toks in (tok_pc, tok_pr, tok_rc, tok_rr)]
    assert sums == [PC, PR, RC, RR]
    means = [[sum(t) / len(t) for t in toks] for toks in (tok_pc, tok_pr, tok_rc, tok_rr)]
    tau = 0.25
    losses_mean, metrics_mean = preference_loss(
        *(_t(m) for m in means),
        loss="ipo",
        tau=tau,
        reduction="mean",
        chosen_lengths=len_w,
        rejected_lengths=torch.tensor(len_l),
    )
    # TRL's IPO: (h_w / |y_w| - h_l / |y_l| - 1 / (2 tau))^2, with h_w, h_l summed log-ratios
    expected = [
        ((pc - rc) / lw - (pr - rr) / ll - 1 / (2 * tau)) ** 2
        for pc, pr, rc, rr, lw, ll in zip(PC, PR, RC, RR, len_w, len_l, strict=True)
    ]
    assert losses_mean.tolist() == pytest.approx(expected, rel=1e-13)
    losses_sum, metrics_sum = preference_loss(
        _t(PC), _t(PR), _t(RC), _t(RR), loss="ipo", tau=tau, reduction="sum"
    )
    assert losses_sum.tolist() == pytest.approx(
        [_hand_loss("ipo", h, tau) for h in _hand_margins()]
    )
    assert not torch.allclose(losses_mean, losses_sum)  # two different losses
    # The metrics are reported on sums in both cases (as TRL does for IPO).
    for key in METRIC_NAMES:
        assert float(metrics_mean[key]) == pytest.approx(float(metrics_sum[key]), rel=1e-13), key


# -------------------------------------------------------------------------------- gradients


def test_gradient_reaches_the_policy_and_not_the_reference():
    beta = 0.5
    pc, pr = _t(PC, grad=True), _t(PR, grad=True)
    rc, rr = _t(RC, grad=True), _t(RR, grad=True)
    losses, metrics = preference_loss(pc, pr, rc, rr, loss="dpo", beta=beta, reduction="sum")
    losses.sum().backward()
    # d/dpc [-log sigma(beta h)] = -beta sigma(-beta h); d/dpr is its negative.
    slope = [-beta / (1 + math.exp(beta * h)) for h in _hand_margins()]
    assert pc.grad.tolist() == pytest.approx(slope, rel=1e-13)
    assert pr.grad.tolist() == pytest.approx([-s for s in slope], rel=1e-13)
    assert rc.grad is None and rr.grad is None
    assert all(not v.requires_grad for v in metrics.values())


@pytest.mark.parametrize("name", ["dpo", "ipo", "robust_dpo", "gpo_exponential"])
def test_gradcheck_in_the_policy_logps(name):
    kwargs = _knob(name, 0.5)
    if name == "robust_dpo":
        kwargs["label_smoothing"] = 0.1

    def f(pc, pr):
        return preference_loss(
            pc, pr, _t(RC), _t(RR), loss=name, reduction="sum", label_weight=0.7, **kwargs
        )[0]

    assert torch.autograd.gradcheck(f, (_t(PC, grad=True), _t(PR, grad=True)))


def test_trl_names_map_to_project_losses():
    assert set(TRL_LOSS_TYPES.values()) <= set(LOSSES)
    assert TRL_LOSS_TYPES["sigmoid"] == "dpo" and TRL_LOSS_TYPES["hinge"] == "slic"


# ------------------------------------------------------------------------------- bad input

GOOD = {"loss": "dpo", "beta": 0.1, "reduction": "sum"}


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((PC, PR, RC, RR), {**GOOD, "reduction": "token"}, "reduction"),
        ((PC, PR, RC, RR), {"loss": "dpo", "beta": 0.1}, None),  # reduction has no default
        ((PC, PR, RC, RR), {**GOOD, "loss": "sigmoid"}, "loss.*'dpo' here"),
        ((PC, PR, RC, RR), {**GOOD, "loss": "kto"}, "loss"),
        ((PC, PR, RC, RR), {"loss": "dpo", "reduction": "sum"}, "beta is required"),
        ((PC, PR, RC, RR), {**GOOD, "tau": 0.1}, "tau is only used"),
        ((PC, PR, RC, RR), {"loss": "ipo", "beta": 0.1, "reduction": "sum"}, "beta is not used"),
        ((PC, PR, RC, RR), {"loss": "ipo", "reduction": "sum"}, "tau is required"),
        ((PC, PR, RC, RR), {**GOOD, "beta": 0.0}, "beta"),
        ((PC, PR, RC, RR), {"loss": "ipo", "tau": -1.0, "reduction": "sum"}, "tau"),
        ((PC, PR, RC, RR), {**GOOD, "label_smoothing": 0.5}, "label_smoothing"),
        (
            (PC, PR, RC, RR),
            {"loss": "slic", "beta": 0.1, "reduction": "sum", "label_smoothing": 0.1},
            "label_smoothing",
        ),
        ((PC, PR, RC, RR), {**GOOD, "label_weight": 1.5}, "label_weight"),
        ((PC, PR, RC, RR), {**GOOD, "label_weight": [0.5, 0.5]}, "label_weight"),
        ((PC, PR, RC, RR), {**GOOD, "reduction": "mean"}, "chosen_lengths"),
        (
            (PC, PR, RC, RR),
            {
                **GOOD,
                "reduction": "mean",
                "chosen_lengths": [1, 2, 3],
                "rejected_lengths": [1, 0, 1],
            },
            "rejected_lengths",
        ),
        (
            (PC, PR, RC, RR),
            {**GOOD, "reduction": "mean", "chosen_lengths": [1, 2], "rejected_lengths": [1, 1, 1]},
            "chosen_lengths",
        ),
        (
            (PC, PR, RC, RR),
            {**GOOD, "chosen_lengths": [1, 2, 3], "rejected_lengths": [1, 2, 3]},
            "only used with reduction='mean'",
        ),
        ((PC, PR[:2], RC, RR), GOOD, "policy_rejected_logps"),
        ((PC, PR, RC, [RR]), GOOD, "ref_rejected_logps"),
        (([], [], [], []), GOOD, "policy_chosen_logps.*non-empty"),
        ((PC, PR, [-1.0, float("nan"), -1.0], RR), GOOD, "ref_chosen_logps.*finite"),
        (([1.0, -1.0, -1.0], PR, RC, RR), GOOD, "policy_chosen_logps.*<= 0"),
        ((torch.tensor([-1, -2, -3]), PR, RC, RR), GOOD, "policy_chosen_logps.*floating"),
    ],
)
def test_bad_input_names_the_argument(args, kwargs, match):
    if match is None:
        with pytest.raises(TypeError, match="reduction"):
            preference_loss(*args, **kwargs)
        return
    with pytest.raises(ValueError, match=match):
        preference_loss(*args, **kwargs)


def test_bad_scale_in_metrics():
    with pytest.raises(ValueError, match="scale"):
        preference_metrics(PC, PR, RC, RR, scale=0.0)
