"""Input validation at its root (``prefopt_toy._validate``), one class of silent failure per test.

1. Low-precision input is checked against the rounding of its own dtype, not a size-dependent
   slack: a genuinely wrong bfloat16 / float16 matrix or policy is rejected, a correctly rounded
   one is accepted, and what comes back satisfies its invariant exactly in float64.
2. Numbers are numbers: strings, complex values, booleans outside tensors and integers too large
   for float64 raise a ValueError naming the argument instead of being parsed, truncated or
   escaping as OverflowError.
3. The per-pair losses and ``margin`` stay finite, in value and gradient, for |margin| up to 1e4
   in float16, bfloat16, float32 and float64.

Everything is called through the public API (``import prefopt_toy as pt``), except the tolerance
formulas themselves, which are checked against their documented values.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from _loss_table import LOSSES  # tests/_loss_table.py

import prefopt_toy as pt
from prefopt_toy._validate import PROB_ATOL, as_policy, policy_tolerance, preference_tolerance
from prefopt_toy.losses.gpo import exponential_threshold

BF16, F16, F32, F64 = torch.bfloat16, torch.float16, torch.float32, torch.float64
RPS = pt.rock_paper_scissors(1.0)
UNIFORM3 = [1 / 3, 1 / 3, 1 / 3]


def _raises_naming(argument: str, fragment: str, call) -> None:
    with pytest.raises(ValueError, match=rf"(?<![\w.]){re.escape(argument)}(?!\w)") as info:
        call()
    assert fragment in str(info.value), f"message does not state {fragment!r}: {info.value}"


# ---------------------------------------------------------------------------------------------
# 1. low precision


def test_low_precision_wrong_inputs_are_rejected_and_valid_ones_return_exact_invariants():
    # Genuinely wrong: the old slack 16 * eps * sqrt(n) accepted all of these.
    _raises_naming(
        "P",
        "P + P.T",
        lambda: pt.check_preference_matrix(torch.tensor([[0.5, 0.6], [0.6, 0.5]], dtype=BF16)),
    )  # pair sum 1.2
    _raises_naming(
        "mu", "sum to 1", lambda: pt.regularized_nash(RPS, torch.full((3,), 2 / 3, dtype=BF16), 1.0)
    )
    _raises_naming(
        "mu",
        "sum to 1",
        lambda: pt.ipo_optimum(RPS, torch.tensor([0.34, 0.34, 0.33], dtype=F16), 1.0),
    )
    _raises_naming(
        "mu",
        "sum to 1",
        lambda: pt.ipo_optimum(RPS, np.array([0.34, 0.34, 0.33], dtype=np.float16), 1.0),
    )
    # Size does not buy slack: 1000 bfloat16 entries summing to 1.05 (old tolerance: 3.95).
    _raises_naming("p", "sum to 1", lambda: pt.entropy(torch.full((1000,), 1.05e-3, dtype=BF16)))

    # Correctly rounded: accepted.
    third = torch.tensor(UNIFORM3, dtype=BF16)  # sums to 1.0039 in bfloat16
    assert pt.kl(third, UNIFORM3) == pytest.approx(0.0, abs=1e-14)  # renormalised to exactly 1/3
    mu = as_policy(third, "mu")
    assert mu.dtype == F64 and float(mu.sum()) == 1.0 and bool((mu == mu[0]).all())
    z = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=F32) * 5.0
    assert pt.entropy(torch.softmax(z, 0)) > 0  # float32 softmax: sums to 1 only within ~10 ulps
    scores = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=F32) * 3.0
    bt32 = torch.sigmoid(scores[:, None] - scores[None, :])  # a BT matrix computed in float32
    pt.check_preference_matrix(bt32)

    # Returned invariants hold exactly in float64.
    for seed in range(5):
        P = pt.random_game(6, seed=seed)
        for dtype in (BF16, F16, F32):
            low = P.to(dtype)
            Q = pt.check_preference_matrix(low)
            assert Q.dtype == F64
            assert bool((Q + Q.T == 1.0).all()), dtype
            assert bool((Q.diagonal() == 0.5).all())
            # the projection moves each entry by at most half the pair's gap
            gap = (low.double() + low.double().T - 1.0).abs()
            assert bool(((Q - low.double().clamp(0, 1)).abs() <= gap / 2 + 1e-16).all())
    # float64 input already exactly complementary comes back bit for bit
    assert torch.equal(pt.check_preference_matrix(RPS), RPS)
    off = RPS.clone()
    off[0, 1] += 1e-12  # within PROB_ATOL: accepted, and made exact
    Q = pt.check_preference_matrix(off)
    assert bool((Q + Q.T == 1.0).all()) and float((Q - RPS).abs().max()) <= 1e-12


def test_tolerance_formulas_follow_the_dtype_not_the_size():
    eps = {dt: torch.finfo(dt).eps for dt in (BF16, F16, F32, F64)}
    pair = torch.tensor([[0.5, 0.6], [0.4, 0.5]], dtype=F64)
    tol = preference_tolerance(pair, eps[BF16])
    assert float(tol[0, 1]) == pytest.approx(PROB_ATOL + 2 * eps[BF16] * 1.0)
    assert float(preference_tolerance(pair, eps[F64])[0, 1]) < PROB_ATOL * (1 + 1e-6)
    u32 = eps[F32] / 2
    for n in (3, 1000):
        x = torch.full((n,), 1.0 / n, dtype=F64)
        expected = PROB_ATOL + (2 * eps[F32] + n * u32) * 1.0
        assert float(policy_tolerance(x, eps[F32], u32)) == pytest.approx(expected)
    # bfloat16 tolerance on a sum of mass 1 is ~0.0156 whatever the size (the old rule gave 3.95 at 1000)
    x = torch.full((1000,), 1e-3, dtype=F64)
    assert float(policy_tolerance(x, eps[BF16], u32)) < 0.0157


# ---------------------------------------------------------------------------------------------
# 2. numbers are numbers


NOT_NUMBERS = [
    ("string_margin", lambda: pt.dpo_loss("1.0", 0.1), "margin", "numeric"),
    ("bytes_margin", lambda: pt.ipo_loss(b"1.0", 0.1), "margin", "numeric"),
    ("string_in_list_margin", lambda: pt.slic_loss([1.0, "2.0"], 0.1), "margin", "numeric"),
    (
        "string_in_nested_list_P",
        lambda: pt.check_preference_matrix([[0.5, "0.5"], [0.5, 0.5]]),
        "P",
        "numeric",
    ),
    (
        "numpy_string_array_mu",
        lambda: pt.ipo_optimum(RPS, np.array(["0.5", "0.25", "0.25"]), 1.0),
        "mu",
        "numeric",
    ),
    (
        "object_array_with_string_pi",
        lambda: pt.win_rates(RPS, np.array([0.5, "0.25", 0.25], dtype=object)),
        "pi",
        "numeric",
    ),
    ("string_tau", lambda: pt.ipo_optimum(RPS, UNIFORM3, "1.0"), "tau", "real number"),
    ("complex_numpy_margin", lambda: pt.dpo_loss(np.array([1.0 + 1e-3j]), 0.1), "margin", "real"),
    ("complex_python_margin", lambda: pt.gpo_loss(1 + 0j, 0.1, "logistic"), "margin", "real"),
    ("complex_in_list_mu", lambda: pt.kl([0.5 + 0j, 0.5], [0.5, 0.5]), "p", "real"),
    (
        "complex_tensor_theta",
        lambda: pt.softmax(torch.zeros(3, dtype=torch.complex64)),
        "theta",
        "real",
    ),
    (
        "complex_python_tau",
        lambda: pt.regularized_nash(RPS, UNIFORM3, 1 + 0j),
        "tau",
        "real number",
    ),
    (
        "complex_0d_array_beta",
        lambda: pt.dpo_loss([1.0], np.array(0.1 + 0j)),
        "beta",
        "real number",
    ),
    (
        "complex_tensor_beta",
        lambda: pt.dpo_loss([1.0], torch.tensor([0.1 + 0j, 0.2])),
        "beta",
        "real number",
    ),
    ("huge_int_margin", lambda: pt.dpo_loss(10**400, 0.1), "margin", "finite"),
    ("huge_int_in_list_theta", lambda: pt.log_softmax([0, 10**400, 1]), "theta", "finite"),
    ("huge_int_tau", lambda: pt.ipo_loss([1.0], 10**400), "tau", "finite"),
    (
        "huge_int_beta_rlhf",
        lambda: pt.rlhf_optimum(RPS * 0 + 0.5, UNIFORM3, 10**309),
        "beta",
        "finite",
    ),
    (
        "float128_overflow_margin",
        lambda: (
            pt.ipo_loss(np.array([np.longdouble("1e400")]), 0.1)
            if np.finfo(np.longdouble).max > 1e400
            else pt.ipo_loss([math.inf], 0.1)
        ),
        "margin",
        "finite",
    ),
    ("bool_list_margin", lambda: pt.dpo_loss([True, False], 0.1), "margin", "numeric"),
    (
        "bool_tensor_margin",
        lambda: pt.dpo_loss(torch.tensor([True, False]), 0.1),
        "margin",
        "real floating",
    ),
    ("bool_numpy_pi", lambda: pt.entropy(np.array([True, False])), "p", "numeric"),
    ("none_in_list_mu", lambda: pt.kl([0.5, None], [0.5, 0.5]), "p", "numeric"),
    ("ragged_P", lambda: pt.check_preference_matrix([[0.5, 0.5], [0.5]]), "P", "numeric"),
]


@pytest.mark.parametrize(
    ("call", "argument", "fragment"), [pytest.param(c, a, f, id=i) for i, c, a, f in NOT_NUMBERS]
)
def test_not_a_real_finite_number_raises_value_error_naming_the_argument(call, argument, fragment):
    _raises_naming(argument, fragment, call)


def test_real_numbers_in_any_container_are_still_accepted():
    as_objects = np.array([Fraction(1, 2), np.float32(0.25), 0.25], dtype=object)
    assert pt.kl(as_objects, [0.5, 0.25, 0.25]) == pytest.approx(0.0, abs=1e-15)
    assert float(pt.ipo_loss([1, 2], 0.5)[1]) == 1.0  # Python ints
    assert float(pt.ipo_loss(10**20, 0.5)) == pytest.approx(1e40)  # big, but fits float64
    assert pt.ipo_loss(1.0, np.float32(0.5)).item() == 0.0
    assert pt.ipo_loss(1.0, torch.tensor(0.5)).item() == 0.0
    mixed = [np.float64(0.2), Fraction(3, 10), 1 / 2]  # an object array of numbers
    assert pt.entropy(mixed) > 0


# ---------------------------------------------------------------------------------------------
# 3. losses finite in every float dtype


GRID = [-1e4, -3e3, -250.0, -44.0, -6.0, -1.0, 0.0, 0.5, 1.0, 6.0, 44.0, 250.0, 3e3, 1e4]


@pytest.mark.parametrize("dtype", [F16, BF16, F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_and_gradients_finite_at_extreme_margins_in_every_dtype(name, dtype):
    expected_dtype = F32 if dtype == F16 else dtype  # float16 margins give float32 losses
    for strength in (0.1, 1.0):
        h = torch.tensor(GRID, dtype=dtype, requires_grad=True)
        out = LOSSES[name](h, strength)
        assert out.dtype == expected_dtype and out.shape == h.shape
        assert bool(torch.isfinite(out).all()), (name, dtype, strength, out)
        (grad,) = torch.autograd.grad(out.sum(), h)
        assert grad.dtype == dtype and bool(torch.isfinite(grad).all()), (
            name,
            dtype,
            strength,
            grad,
        )
        # Same numbers as float64 on the same (rounded) margins: half precision is computed in
        # float32. The exponential's linear tail starts at the dtype's own threshold (documented).
        keep = torch.ones(len(GRID), dtype=torch.bool)
        if name == "gpo_exponential":
            keep = strength * h.detach().double() >= exponential_threshold(dtype)
        reference = LOSSES[name](h.detach().double(), strength)
        rtol = {F16: 1e-6, BF16: 8e-3, F32: 1e-6, F64: 1e-15}[dtype]
        torch.testing.assert_close(out.double()[keep], reference[keep], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [F16, BF16, F32, F64], ids=str)
def test_margin_finite_in_every_dtype(dtype):
    # log-ratios -7e4 and -6.5e4 overflow float16 (65504); their difference, the margin -5e3, does not
    values = ([-6e4, -1.0], [-6e4, -2.0], [1e4, -1.0], [5e3, -1.0])
    logps = [torch.tensor(v, dtype=dtype, requires_grad=True) for v in values]
    h = pt.margin(*logps)
    assert h.dtype == (F32 if dtype == F16 else dtype)
    exact = pt.margin(*[t.detach().double() for t in logps])  # of the (rounded) inputs
    assert float(exact[0]) == pytest.approx(-5e3, rel=1e-2)
    # subtracted in float32 (exact here) and rounded once: bfloat16 keeps 8 bits
    torch.testing.assert_close(h.double(), exact, rtol=2.0**-8 if dtype == BF16 else 0.0, atol=0.0)
    grads = torch.autograd.grad(pt.ipo_loss(h, 0.5).sum(), logps)
    assert all(g.dtype == dtype and bool(torch.isfinite(g).all()) for g in grads)
