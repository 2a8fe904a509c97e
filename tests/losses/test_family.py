"""The rest of the DPO family's per-example losses against formulas written here in numpy / math.

KTO (Ethayarajh et al., arXiv:2402.01306v4, Sec. 4), SimPO (Meng et al., arXiv:2405.14734v3,
Eq. 6), ORPO (Hong et al., arXiv:2403.07691v2, Eq. 6-7), R-DPO (Park et al., arXiv:2403.19159v3),
DPOP (Pal et al., arXiv:2402.13228v3). Each expected value below is computed independently of the
library (numpy / math), never from the library's own earlier output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import prefopt_toy as pt


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(0.0, x)


RNG = np.random.default_rng(0)
R = RNG.normal(size=7)
Z0 = 0.3
D = np.array([1, 0, 1, 1, 0, 0, 1], dtype=float)


@pytest.mark.parametrize("wd, wu", [(1.0, 1.0), (1.0, 1.33), (2.0, 0.5)])
def test_kto_loss_matches_the_formula(wd, wu):
    got = pt.kto_loss(R, Z0, D.astype(bool).tolist(), beta=0.7, desirable_weight=wd,
                      undesirable_weight=wu).numpy()  # fmt: skip
    want = np.where(D == 1, wd * (1 - _sig(0.7 * (R - Z0))), wu * (1 - _sig(0.7 * (Z0 - R))))
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_kto_soft_label_is_the_expected_loss():
    p = 0.3
    soft = pt.kto_loss(R, Z0, np.full(7, p), beta=0.5)
    hard = p * pt.kto_loss(R, Z0, np.ones(7), beta=0.5) + (1 - p) * pt.kto_loss(
        R, Z0, np.zeros(7), beta=0.5
    )
    torch.testing.assert_close(soft, hard, rtol=1e-14, atol=1e-15)


def test_kto_directions():
    r = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    pt.kto_loss(r, 0.0, [True, False], beta=1.0).sum().backward()
    assert r.grad[0] < 0 < r.grad[1]  # desirable pushed up, undesirable down


def test_kto_reference_point_clamps_and_detaches():
    x = torch.tensor([-0.5, 0.1], dtype=torch.float64, requires_grad=True)
    assert float(pt.kto_reference_point(x)) == 0.0
    assert float(pt.kto_reference_point(x, clamp=False)) == pytest.approx(-0.2, abs=1e-15)
    assert not pt.kto_reference_point(x).requires_grad
    with pytest.raises(ValueError, match="mismatched_logratios"):
        pt.kto_reference_point([])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"desirable": [0.5, 1.5]}, "desirable"),
        ({"beta": 0.0}, "beta"),
        ({"desirable_weight": -1.0}, "desirable_weight"),
        ({"reference_point": float("nan")}, "reference_point"),
    ],
)
def test_kto_bad_input(kwargs, match):
    args = {"logratio": [0.1, 0.2], "reference_point": 0.0, "desirable": [1.0, 0.0], "beta": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pt.kto_loss(**args)


def test_simpo_matches_the_formula_and_both_margin_names():
    w, lo = RNG.normal(size=5) - 2, RNG.normal(size=5) - 2
    beta, ratio = 2.5, 0.55
    want = _softplus(-(beta * (w - lo) - ratio * beta))
    a = pt.simpo_loss(w, lo, beta, gamma_beta_ratio=ratio).numpy()
    b = pt.simpo_loss(w, lo, beta, gamma=ratio * beta).numpy()
    np.testing.assert_allclose(a, want, rtol=1e-13)
    np.testing.assert_allclose(b, want, rtol=1e-13)
    eps = 0.1
    c = pt.simpo_loss(w, lo, beta, gamma=1.0, label_smoothing=eps).numpy()
    z = beta * (w - lo) - 1.0
    np.testing.assert_allclose(c, (1 - eps) * _softplus(-z) + eps * _softplus(z), rtol=1e-13)
    with pytest.raises(ValueError, match="not both"):
        pt.simpo_loss(w, lo, beta, gamma=1.0, gamma_beta_ratio=0.5)
    with pytest.raises(ValueError, match="avg_logp_rejected"):
        pt.simpo_loss(w, lo[:3], beta)


@pytest.mark.parametrize("p", [1e-300, 1e-20, 0.3, 0.5, 0.9, 1 - 1e-12])
def test_log_odds_is_accurate_on_both_sides(p):
    lp = math.log(p) if p < 0.5 else math.log1p(-(1 - p))
    want = math.log(p) - math.log1p(-p)
    assert float(pt.log_odds(torch.tensor(lp, dtype=torch.float64))) == pytest.approx(
        want, rel=1e-9, abs=1e-12
    )


def test_log_odds_refuses_probability_one():
    with pytest.raises(ValueError, match="logp"):
        pt.log_odds([0.0])


def test_orpo_matches_the_formula_and_the_exact_log1mp_path():
    pw = np.array([0.2, 0.6, 0.05])
    pl = np.array([0.1, 0.3, 0.5])
    lam = 0.25
    lo_w, lo_l = np.log(pw / (1 - pw)), np.log(pl / (1 - pl))
    want = -np.log(pw) + lam * _softplus(-(lo_w - lo_l))
    got = pt.orpo_loss(np.log(pw), np.log(pl), lam).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13)
    exact = pt.orpo_loss(np.log(pw), np.log(pl), lam, log1mp_chosen=np.log1p(-pw),
                         log1mp_rejected=np.log1p(-pl)).numpy()  # fmt: skip
    np.testing.assert_allclose(exact, want, rtol=1e-13)
    nll = pt.orpo_loss(np.log(pw), np.log(pl), lam, nll=2.0).numpy()
    np.testing.assert_allclose(nll, want + np.log(pw) + 2.0, rtol=1e-13)


def test_rdpo_is_dpo_on_a_shifted_margin():
    h = RNG.normal(size=6) * 3
    lw, ll = RNG.integers(1, 9, size=6).astype(float), RNG.integers(1, 9, size=6).astype(float)
    got = pt.rdpo_loss(h, 0.2, 0.05, lw, ll).numpy()
    np.testing.assert_allclose(got, _softplus(-(0.2 * h + 0.05 * (lw - ll))), rtol=1e-13)
    torch.testing.assert_close(
        pt.rdpo_loss(h, 0.2, 0.0, lw, ll), pt.dpo_loss(h, 0.2), rtol=0, atol=0
    )
    with pytest.raises(ValueError, match="length_chosen"):
        pt.rdpo_loss(h, 0.2, 0.05, 0.0, 1.0)


@pytest.mark.parametrize("placement", ["inside", "outside"])
def test_dpop_matches_the_formula(placement):
    h = RNG.normal(size=8)
    c = RNG.normal(size=8)
    beta, lam = 0.3, 5.0
    pen = np.maximum(0.0, -c)
    want = (
        _softplus(-beta * (h - lam * pen))
        if placement == "inside"
        else _softplus(-beta * h) + lam * pen
    )
    got = pt.dpop_loss(h, c, beta, lam, placement).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13)
    # no penalty while the chosen action keeps its reference probability: DPO
    above = np.abs(c)
    torch.testing.assert_close(
        pt.dpop_loss(h, above, beta, lam, placement), pt.dpo_loss(h, beta), rtol=0, atol=0
    )
    with pytest.raises(ValueError, match="placement"):
        pt.dpop_loss(h, c, beta, lam, "middle")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_family_losses_finite_at_extreme_inputs(dtype):
    x = torch.tensor([-1e4, -1.0, 0.0, 1e4], dtype=dtype, requires_grad=True)
    neg = torch.tensor([-1e4, -3.0, -1e-3, -0.5], dtype=dtype, requires_grad=True)
    outs = [
        pt.kto_loss(x, 0.0, [1.0, 0.0, 1.0, 0.0], beta=1.0),
        pt.simpo_loss(x, x.flip(0), 1.0, gamma=0.5),
        pt.rdpo_loss(x, 1.0, 0.5, 3.0, 1.0),
        pt.dpop_loss(x, x.flip(0), 1.0, 50.0, "inside"),
        pt.dpop_loss(x, x.flip(0), 1.0, 50.0, "outside"),
        pt.orpo_loss(neg, neg.flip(0), 1.0),
    ]
    for out in outs:
        assert torch.isfinite(out).all()
        (g,) = torch.autograd.grad(out.sum(), [x if out is not outs[-1] else neg])
        assert torch.isfinite(g).all()
