"""prefopt_toy.analysis.conventions: the convention table against the README, and TRL's averaged IPO.

Oracles: the README's own Notation table (parsed here), the closed form ``ipo_optimum`` at
tau / L for equal lengths (Azar et al., arXiv:2310.12036v2, Eq. (9)), a gradient written here as
an explicit loop over pairs with autograd, and a semi-closed form derived by hand (below) solved by
bisection in this file.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.analysis import conventions as cv

README = Path(__file__).resolve().parents[2] / "README.md"
F64 = torch.float64


# ------------------------------------------------------------------------------ the table


def readme_notation_table() -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table under '## Notation' in README.md."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Notation")
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    header, sep, *rows = table
    assert set("".join(sep)) <= set("-: ")
    return header, rows


def test_readme_notation_table_agrees_with_knobs_cell_by_cell():
    header, rows = readme_notation_table()
    to_field = {v: k for k, v in cv.PAPER_COLUMNS.items()}
    assert all(h in to_field for h in header), f"README column without a Knob field: {header}"
    knobs = {k.code: k for k in cv.KNOBS}
    assert len(rows) >= 10
    for row in rows:
        assert len(row) == len(header)
        knob = knobs[row[0]]  # KeyError: a README row missing from KNOBS
        for title, cell in zip(header, row):
            assert getattr(knob, to_field[title]) == cell, (row[0], title)
    # ... and every README row comes first in KNOBS, in the README's order.
    assert [k.code for k in cv.KNOBS[: len(rows)]] == [r[0] for r in rows]


def test_convention_table_dataframe_matches_knobs():
    table = cv.convention_table()
    assert list(table.index) == [k.code.replace("`", "") for k in cv.KNOBS]
    assert table.loc["tau", "IPO (Azar et al.)"] == "τ"
    assert table.loc["mu", "TRL"] == "ref_model"  # backticks stripped
    assert cv.convention_table(markdown=True).loc["`mu`", "TRL"] == "`ref_model`"
    narrow = cv.convention_table(columns=["ipo", "trl"])
    assert list(narrow.columns) == ["IPO (Azar et al.)", "TRL"]
    assert not any("`" in str(v) for v in table.to_numpy().ravel())


def test_every_paper_column_is_filled():
    for knob in cv.KNOBS:
        for field in ("meaning", "dpo", "ipo", "nash_md", "ipo_md", "gpo", "slic", "trl"):
            assert getattr(knob, field).strip(), (knob.code, field)


# ------------------------------------------------------------------------ sum versus mean


def test_effective_tau():
    assert cv.effective_tau(0.1, 50) == pytest.approx(0.002, rel=1e-15)
    assert cv.effective_tau(2.0, 1) == 2.0


@pytest.mark.parametrize("length", [1, 7, 64])
def test_averaged_loss_is_summed_loss_at_effective_tau_for_equal_lengths(length):
    gen = torch.Generator().manual_seed(length)
    r_w, r_l = (
        torch.randn(50, generator=gen, dtype=F64) * 5,
        torch.randn(50, generator=gen, dtype=F64) * 5,
    )
    tau = 0.3
    averaged = cv.averaged_ipo_loss(r_w, r_l, length, length, tau)
    # (h / L - 1 / (2 tau))^2 = (1 / L^2) (h - 1 / (2 tau / L))^2, with pt.ipo_loss = (h - 1/(2 tau))^2.
    summed = pt.ipo_loss(r_w - r_l, tau=tau / length) / length**2
    torch.testing.assert_close(averaged, summed, rtol=1e-12, atol=1e-12)


def test_averaged_population_loss_with_unit_lengths_is_population_loss():
    P, mu = pt.random_game(4, seed=3), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    theta = torch.tensor([0.3, -1.0, 0.5, 2.0], dtype=F64)
    nu = torch.tensor([0.25, 0.25, 0.4, 0.1], dtype=F64)
    ours = cv.averaged_ipo_population_loss(theta, P, mu, 0.2, [1, 1, 1, 1], nu)
    ref = pt.population_loss(theta, P, mu, lambda h: pt.ipo_loss(h, tau=0.2), nu=nu)
    assert abs(float(ours) - float(ref)) < 1e-12


CASES = [
    (pt.three_voter_types(0.1), [0.5, 0.3, 0.2], None),
    (pt.rock_paper_scissors(0.8), [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]),
    (pt.random_game(5, seed=1), [0.1, 0.3, 0.2, 0.25, 0.15], None),
    (pt.random_game(4, seed=2, transitive=True, scale=2.0), [0.25] * 4, [0.4, 0.3, 0.2, 0.1]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("tau,length", [(0.1, 1), (0.5, 10), (1.0, 3), (2.0, 100)])
def test_equal_lengths_optimum_is_ipo_optimum_at_tau_over_length(case, tau, length):
    P, mu, nu = CASES[case]
    k = len(mu)
    got = cv.averaged_ipo_optimum(P, mu, tau, [length] * k, nu)
    expected = pt.ipo_optimum(P, mu, tau / length, nu)  # closed form mu exp(P nu / tau_eff) / Z
    assert float((got - expected).abs().max()) < 1e-10


def loop_gradient(pi, P, mu, nu, tau, lengths):
    """Gradient in the logits of TRL's averaged population IPO loss, one ordered pair at a time."""
    theta = torch.tensor(np.log(pi), dtype=F64, requires_grad=True)
    log_pi = theta - torch.logsumexp(theta, 0)
    total = torch.zeros((), dtype=F64)
    k = len(mu)
    for w in range(k):
        for l in range(k):
            avg_w = (log_pi[w] - math.log(mu[w])) / lengths[w]
            avg_l = (log_pi[l] - math.log(mu[l])) / lengths[l]
            total = total + nu[w] * nu[l] * P[w][l] * (avg_w - avg_l - 1.0 / (2.0 * tau)) ** 2
    (grad,) = torch.autograd.grad(total, theta)
    return grad


def semi_closed_form(P, mu, nu, tau, lengths):
    """Derived by hand: log(pi/mu)(y) = L(y) ((P nu)_y / tau + c), c by bisection on sum(pi) = 1.

    The averaged log-ratios s = log(pi/mu) / L enter the loss only through differences, and the
    least-squares solution of s_y - s_y' = 1/(2 tau) weighted by nu nu' P is s = P nu / tau + c
    (Azar et al. Eq. (13) with s in place of the log-ratio); sum(mu exp(L s)) is increasing in c.
    """
    g = np.asarray(P) @ np.asarray(nu) / tau
    mu, lengths = np.asarray(mu), np.asarray(lengths, dtype=float)

    def log_total(c):
        return np.logaddexp.reduce(np.log(mu) + lengths * (g + c))

    lo, hi = -1.0, 1.0
    while log_total(lo) > 0:
        lo *= 2
    while log_total(hi) < 0:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if log_total(mid) < 0 else (lo, mid)
    return np.exp(np.log(mu) + lengths * (g + 0.5 * (lo + hi)))


UNEQUAL = [
    (0, 0.5, [3, 10, 30]),
    (1, 1.0, [20, 5, 12]),
    (2, 2.0, [1, 2, 3, 4, 50]),
    (3, 0.7, [8, 8, 30, 2]),
]


@pytest.mark.parametrize("case,tau,lengths", UNEQUAL)
def test_unequal_lengths_first_order_condition_and_semi_closed_form(case, tau, lengths):
    P, mu, nu = CASES[case]
    nu = mu if nu is None else nu
    pi = cv.averaged_ipo_optimum(P, mu, tau, lengths, nu)
    P_list = torch.as_tensor(P, dtype=F64).tolist()
    grad = loop_gradient(pi.numpy(), P_list, mu, nu, tau, lengths)
    assert float(grad.abs().max()) < 1e-9
    assert np.abs(pi.numpy() - semi_closed_form(P_list, mu, nu, tau, lengths)).max() < 1e-10


def test_unequal_lengths_optimum_is_no_summed_ipo_optimum_for_any_tau():
    P, mu, _ = CASES[0]
    tau, lengths = 0.5, [3, 10, 30]
    pi = cv.averaged_ipo_optimum(P, mu, tau, lengths).numpy()
    r = np.log(pi / np.asarray(mu))
    g = np.asarray(P) @ np.asarray(mu)
    # Every summed optimum mu exp(g / t) / Z has log-ratio differences proportional to those of g,
    # with the same ratio for every t: (r0 - r1) / (r1 - r2) = (g0 - g1) / (g1 - g2).
    assert (
        abs((r[0] - r[1]) / (r[1] - r[2]) - (g[0] - g[1]) / (g[1] - g[2])) > 0.05
    )  # 0.133 here; round-off is ~1e-12
    # Numerically too: on a dense grid of t no summed optimum comes within 1e-3 (TV).
    grid = np.geomspace(1e-3, 1e3, 2001)
    tv = [0.5 * np.abs(pt.ipo_optimum(P, mu, t).numpy() - pi).sum() for t in grid]
    assert min(tv) > 1e-3
    best_t, best_d = cv.best_effective_tau(P, mu, tau, lengths)
    assert best_d <= min(tv) + 1e-12 and best_d > 1e-3
    # And with equal lengths the search recovers tau / L.
    t_eq, d_eq = cv.best_effective_tau(P, mu, tau, [10, 10, 10])
    assert abs(t_eq - tau / 10) < 1e-6 * tau and d_eq < 1e-8


# ------------------------------------------------------------------------------ bad input


P3, MU3 = pt.three_voter_types(0.1), [0.5, 0.3, 0.2]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: cv.effective_tau(0.0, 5), "tau"),
        (lambda: cv.effective_tau(0.1, -1), "length"),
        (lambda: cv.effective_tau(float("nan"), 1), "tau"),
        (lambda: cv.averaged_ipo_loss(1.0, 0.0, 0, 3, 0.1), "length_chosen"),
        (lambda: cv.averaged_ipo_loss(1.0, 0.0, 3, -2, 0.1), "length_rejected"),
        (lambda: cv.averaged_ipo_loss(1.0, 0.0, 3, 3, -0.1), "tau"),
        (lambda: cv.averaged_ipo_optimum(P3, MU3, 0.1, [1, 2]), "lengths"),
        (lambda: cv.averaged_ipo_optimum(P3, MU3, 0.1, [1, 0, 2]), "lengths"),
        (lambda: cv.averaged_ipo_optimum(P3, MU3, 0.0, [1, 1, 2]), "tau"),
        (lambda: cv.averaged_ipo_optimum(P3, [0.5, 0.5, 0.0], 0.1, [1, 1, 2]), "mu"),
        (lambda: cv.averaged_ipo_optimum(P3, MU3, 0.1, [1, 1, 2], nu=[0.5, 0.5, 0.0]), "nu"),
        (lambda: cv.averaged_ipo_optimum([[0.5, 0.9], [0.2, 0.5]], [0.5, 0.5], 0.1, [1, 2]), "P"),
        (lambda: cv.averaged_ipo_optimum(P3, MU3, 0.1, [1, 1, 2], max_iter=0), "max_iter"),
        (lambda: cv.averaged_ipo_optimum(P3, MU3, 0.1, [1, 1, 2], tol=0), "tol"),
        (lambda: cv.averaged_ipo_population_loss([0.0, 0.0], P3, MU3, 0.1, [1, 1, 2]), "theta"),
        (
            lambda: cv.best_effective_tau(P3, MU3, 0.1, [1, 1, 2], tau_min=1.0, tau_max=0.5),
            "tau_min",
        ),
        (lambda: cv.convention_table(columns=["ipo", "nope"]), "columns"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------ the pair distribution's default


def test_nu_row_states_the_default_and_every_function_with_mu_follows_it():
    """The `nu` row's note says: default `mu` wherever a function also takes `mu`; `bt_fit` and
    its diagnostics (no `mu`) fit on uniform pairs. Checked here on a non-BT game with a skewed
    `mu`, where the two conventions give different answers."""
    (nu_row,) = [k for k in cv.KNOBS if k.code == "`nu`"]
    assert "Default `mu`" in nu_row.note and "uniform pairs" in nu_row.note
    P, mu = pt.rock_paper_scissors(0.8), torch.tensor([0.6, 0.3, 0.1], dtype=F64)
    uniform = torch.full((3,), 1 / 3, dtype=F64)
    for solver in (pt.rlhf_optimum, pt.ipo_optimum):
        assert torch.equal(solver(P, mu, 0.5), solver(P, mu, 0.5, nu=mu))
        assert float((solver(P, mu, 0.5) - solver(P, mu, 0.5, nu=uniform)).abs().max()) > 0.05
    theta = torch.tensor([0.3, -0.2, 0.1], dtype=F64)
    loss = functools.partial(pt.dpo_loss, beta=0.5)
    assert float(pt.population_loss(theta, P, mu, loss)) == float(
        pt.population_loss(theta, P, mu, loss, nu=mu)
    )
    for name in ("dpo", "ipo", "slic", "gpo_squared", "rlhf"):
        traj = pt.ALGORITHMS[name](P, mu, steps=1, tau=0.5)
        torch.testing.assert_close(traj.hyper["nu"], mu, rtol=0, atol=1e-15)
    assert torch.equal(pt.bt_fit(P), pt.bt_fit(P, uniform))
    assert pt.bt_fit_gap(P) == pt.bt_fit_gap(P, uniform)
    assert pt.bt_fit_kl(P) == pt.bt_fit_kl(P, uniform)
