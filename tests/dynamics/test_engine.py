"""The exact dynamics engine (``prefopt_toy.dynamics``) against independent computations.

Oracles, none of them the engine's own earlier output:

- autograd of the library losses themselves, for every analytic margin derivative in
  ``dynamics/derivatives.py`` (scalar and batched (B, 1, 1) hyperparameters);
- value and autograd gradient of ``prefopt_toy.population_loss`` (fixed ``nu``, online
  ``nu(pi) = pi``, geometric-mixture sampling; soft, hard and sampled labels), for
  ``pairs.expected_loss_and_gradient`` and for whole first steps of the algorithms;
- a hand-written gradient step, and ``torch.optim.Adam`` (a peer implementation) on the same
  gradient sequence;
- per-row unbatched calls, for batched calls over games, reference policies and hyperparameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch

from prefopt_toy import (
    dpo_loss,
    geometric_mixture,
    gpo_loss,
    ipo_loss,
    population_loss,
    random_game,
    robust_dpo_loss,
    slic_loss,
)
from prefopt_toy.dynamics import ALGORITHMS, derivatives, dpo, ipo, ipo_md, online_dpo, online_ipo
from prefopt_toy.dynamics.derivatives import prepare, value_and_derivative
from prefopt_toy.dynamics.optimizers import Adam, GradientDescent
from prefopt_toy.dynamics.pairs import (
    expected_loss_and_gradient,
    fixed_sampler,
    mixture_sampler,
    online_sampler,
    sampled_label_matrix,
)
from prefopt_toy.losses.gpo import GPO_FUNCTIONS
from prefopt_toy.losses.population import hard_label_kernel

F64 = torch.float64


def _simplex(gen: torch.Generator, k: int, floor: float = 0.05) -> torch.Tensor:
    w = floor + torch.rand(k, generator=gen, dtype=F64)
    return w / w.sum()


def _autograd_slope(loss: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """d loss / d h elementwise, by autograd of the library loss itself."""
    x = h.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(x).sum(), x)
    return g


# ---------------------------------------------------------------------------------------------
# analytic margin derivatives (the loss kernels the engine calls) == autograd of the library loss

B, K = 4, 5


def _margins(seed: int) -> torch.Tensor:
    """(B, K, K) margins: moderate random values plus extremes (|h| up to 1e4)."""
    gen = torch.Generator().manual_seed(seed)
    h = 6.0 * torch.randn(B, K, K, generator=gen, dtype=F64)
    h[0, 0, :] = torch.tensor([1e4, -1e4, 1e3, -1e3, 0.0], dtype=F64)
    return h


def _hyper(
    scalar: float, batched: bool, spread: tuple[float, ...] = (0.05, 0.3, 1.0, 2.5)
) -> object:
    """A scalar hyperparameter, or a (B, 1, 1) tensor of per-row values (the engine's layout)."""
    if not batched:
        return scalar
    return torch.tensor(spread, dtype=F64)[:, None, None]


def _loss_cases(batched: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    beta = _hyper(0.7, batched)
    tau = _hyper(0.3, batched)
    eps = _hyper(0.1, batched, spread=(0.0, 0.05, 0.2, 0.45))
    cases: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "dpo": functools.partial(dpo_loss, beta=beta),
        "dpo_label_smoothing": functools.partial(dpo_loss, beta=beta, label_smoothing=eps),
        "robust_dpo": functools.partial(robust_dpo_loss, beta=beta, label_smoothing=eps),
        "ipo": functools.partial(ipo_loss, tau=tau),
        "slic": functools.partial(slic_loss, beta=beta),
    }
    for f in GPO_FUNCTIONS:
        cases[f"gpo_{f}"] = functools.partial(gpo_loss, beta=beta, f=f)
    return cases


def _uses_kernels(loss) -> bool:
    """Whether the engine evaluates ``loss`` through closed-form kernels (not its autograd fallback)."""
    prepared = prepare(loss, torch.zeros(B, 2, 2, dtype=F64))  # B rows: batched strengths broadcast
    return not (
        isinstance(prepared, functools.partial)
        and prepared.func is derivatives._autograd_value_and_slope
    )


def test_every_kernel_is_covered_here():
    # A loss given kernels later must be added to _loss_cases (and so be checked against autograd).
    covered = {case.func for case in _loss_cases(False).values()}
    assert set(derivatives._KERNELS) == covered


# Losses with a kink at beta * h = 1 (hinge, truncated quadratic): margins are kept away from it.
_KINKED = {"slic", "gpo_hinge", "gpo_truncated_quadratic"}


@pytest.mark.parametrize("batched", [False, True], ids=["scalar", "batched"])
@pytest.mark.parametrize("name", sorted(_loss_cases(False)))
def test_analytic_derivative_equals_autograd(name, batched):
    loss = _loss_cases(batched)[name]
    assert _uses_kernels(loss), "a library loss must take the closed-form path"
    h = _margins(seed=len(name))
    if name in _KINKED:
        beta = loss.keywords["beta"]
        # Push every scaled margin at least 1e-3 away from the kink beta * h = 1.
        h = torch.where((beta * h - 1.0).abs() < 1e-3, h + 0.01 / beta, h)
        assert bool(((beta * h - 1.0).abs() > 1e-4).all())
    value, slope = value_and_derivative(loss, h)
    torch.testing.assert_close(value, loss(h), rtol=1e-15, atol=0)
    torch.testing.assert_close(slope, _autograd_slope(loss, h), rtol=1e-12, atol=1e-15)
    assert value.dtype == slope.dtype == F64 and slope.shape == h.shape


@pytest.mark.parametrize("name", ["slic", "gpo_hinge", "gpo_truncated_quadratic"])
def test_kink_convention_matches_autograd(name):
    # Exactly at beta * h = 1 (beta = 0.5, h = 2: no round-off) the kernels follow autograd's
    # convention (clamp_min passes the gradient at equality).
    loss = _loss_cases(False)[name]
    loss = functools.partial(loss.func, **{**loss.keywords, "beta": 0.5})
    h = torch.tensor([[[2.0, 1.0], [3.0, 2.0]]], dtype=F64)
    _, slope = value_and_derivative(loss, h)
    torch.testing.assert_close(slope, _autograd_slope(loss, h), rtol=0, atol=0)


def test_gpo_exponential_derivative_on_both_sides_of_its_threshold():
    # Below x0 = exponential_threshold(float64) ~ -354.9 the loss is its tangent line; the analytic
    # derivative must follow autograd there too (and stay finite).
    loss = functools.partial(gpo_loss, beta=1.0, f="exponential")
    h = torch.tensor([-1e4, -400.0, -354.0, -10.0, 0.0, 10.0, 1e4], dtype=F64)
    _, slope = value_and_derivative(loss, h)
    assert bool(torch.isfinite(slope).all())
    torch.testing.assert_close(slope, _autograd_slope(loss, h), rtol=1e-12, atol=0)


def test_fallback_for_other_callables_is_autograd():
    # Not a partial of a library loss: the engine falls back to autograd. Oracle: d/dh h^3 = 3 h^2.
    def loss(h):
        return h**3 - 2.0 * h

    assert not _uses_kernels(loss)
    h = torch.linspace(-3.0, 3.0, 13, dtype=F64).reshape(1, 13, 1)
    value, slope = value_and_derivative(loss, h)
    torch.testing.assert_close(value, h**3 - 2.0 * h, rtol=0, atol=0)
    torch.testing.assert_close(slope, 3.0 * h**2 - 2.0, rtol=1e-15, atol=1e-15)


def test_fallback_rejects_a_reducing_loss():
    with pytest.raises(ValueError, match="loss"):
        value_and_derivative(lambda h: h.sum(), torch.zeros(1, 2, 2, dtype=F64))


# ---------------------------------------------------------------------------------------------
# pairs.expected_loss_and_gradient == value and autograd gradient of population_loss


def _pair_losses() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    return {
        "dpo": functools.partial(dpo_loss, beta=0.5),
        "cdpo": functools.partial(dpo_loss, beta=1.3, label_smoothing=0.2),
        "robust_dpo": functools.partial(robust_dpo_loss, beta=0.8, label_smoothing=0.1),
        "ipo": functools.partial(ipo_loss, tau=0.3),
        "slic": functools.partial(slic_loss, beta=0.7),
        "gpo_exponential": functools.partial(gpo_loss, beta=0.9, f="exponential"),
        "gpo_savage": functools.partial(gpo_loss, beta=2.0, f="savage"),
        "gpo_squared": functools.partial(gpo_loss, beta=0.6, f="squared"),
        "custom": lambda h: torch.cosh(0.3 * h),  # autograd fallback inside the engine
    }


def _population_value_and_grad(theta, P, mu, loss, nu, labels):
    th = theta.clone().requires_grad_(True)
    value = population_loss(th, P, mu, loss, nu=nu, labels=labels)
    (grad,) = torch.autograd.grad(value, th)
    return value.detach(), grad


@pytest.mark.parametrize("labels", ["soft", "hard", "sampled"])
@pytest.mark.parametrize("sampler", ["reference", "fixed", "online", "mixture"])
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_expected_loss_and_gradient_equal_population_loss(k, sampler, labels):
    gen = torch.Generator().manual_seed(100 * k + len(sampler) + len(labels))
    P = random_game(k, seed=gen)
    mu = _simplex(gen, k)
    theta = 1.5 * torch.randn(k, generator=gen, dtype=F64)
    log_pi = torch.log_softmax(theta, 0)[None]  # (1, K)
    log_mu = mu.log()[None]
    m = 0.35
    if sampler == "reference":
        smp, nu = fixed_sampler(log_mu), None
    elif sampler == "fixed":
        nu = _simplex(gen, k)
        nu[0] = 0.0  # zeros are allowed in a data policy
        nu = nu / nu.sum()
        smp = fixed_sampler(nu.log()[None])
    elif sampler == "online":
        smp, nu = online_sampler(1, k), (lambda p: p)
    else:
        smp = mixture_sampler(log_mu, torch.tensor([m], dtype=F64))

        def nu(p):
            return geometric_mixture(p, mu, m)

    if labels == "soft":
        L, pop_labels = P[None], "soft"
    elif labels == "hard":
        L, pop_labels = hard_label_kernel(P[None]), "hard"
    else:
        L = sampled_label_matrix(P[None], 7, torch.Generator().manual_seed(k))
        pop_labels = L[0]
    for name, loss in _pair_losses().items():
        value, grad = expected_loss_and_gradient(log_pi, log_mu, smp.log_weights(log_pi), L, loss)
        ref_value, ref_grad = _population_value_and_grad(theta, P, mu, loss, nu, pop_labels)
        torch.testing.assert_close(
            value[0], ref_value, rtol=1e-12, atol=1e-12, msg=f"value, {name}"
        )
        torch.testing.assert_close(
            grad[0], ref_grad, rtol=1e-12, atol=1e-12, msg=f"gradient, {name}"
        )


def test_expected_gradient_batched_rows_match_population_loss():
    # One call with B different games, policies and (B, 1, 1) loss strengths.
    gen = torch.Generator().manual_seed(7)
    b, k = 5, 4
    P = torch.stack([random_game(k, seed=gen) for _ in range(b)])
    mu = torch.stack([_simplex(gen, k) for _ in range(b)])
    theta = torch.randn(b, k, generator=gen, dtype=F64)
    tau = torch.tensor([0.05, 0.1, 0.5, 1.0, 4.0], dtype=F64)
    log_pi = torch.log_softmax(theta, -1)
    value, grad = expected_loss_and_gradient(
        log_pi, mu.log(), log_pi, P, functools.partial(ipo_loss, tau=tau[:, None, None])
    )
    for i in range(b):
        ref_value, ref_grad = _population_value_and_grad(
            theta[i],
            P[i],
            mu[i],
            functools.partial(ipo_loss, tau=float(tau[i])),
            lambda p: p,
            "soft",
        )
        torch.testing.assert_close(value[i], ref_value, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad[i], ref_grad, rtol=1e-12, atol=1e-12)


def test_sampled_labels_are_complementary_empirical_frequencies():
    gen = torch.Generator().manual_seed(3)
    P = torch.stack([random_game(5, seed=s) for s in range(3)])
    n = 9
    L = sampled_label_matrix(P, n, gen)
    torch.testing.assert_close(L + L.transpose(-1, -2), torch.ones_like(L), rtol=0, atol=1e-15)
    torch.testing.assert_close(
        torch.diagonal(L, dim1=-2, dim2=-1), torch.full((3, 5), 0.5, dtype=F64)
    )
    counts = L * n  # off the diagonal: whole numbers of wins out of n draws
    off = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(counts[:, off], counts[:, off].round(), rtol=0, atol=1e-12)
    # Deterministic preferences give deterministic labels.
    Pd = torch.tensor([[0.5, 1.0], [0.0, 0.5]], dtype=F64)[None]
    torch.testing.assert_close(sampled_label_matrix(Pd, 5, gen), Pd, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# whole first steps by hand: log pi_1 = normalise(log mu - lr * grad population_loss(log mu))


def _one_step_by_hand(P, mu, loss, nu, labels, lr):
    _, grad = _population_value_and_grad(mu.log(), P, mu, loss, nu, labels)
    return torch.softmax(mu.log() - lr * grad, 0)


@pytest.mark.parametrize(
    "name",
    ["ipo", "ipo_hard", "ipo_nu", "dpo", "cdpo", "online_ipo", "online_dpo", "ipo_md"],
)
def test_first_step_is_a_gradient_step_on_population_loss(name):
    gen = torch.Generator().manual_seed(11)
    k = 4
    P = random_game(k, seed=gen)
    mu = _simplex(gen, k)
    nu = _simplex(gen, k)
    lr = 0.37
    run: dict[str, tuple] = {
        "ipo": (
            lambda: ipo(P, mu, steps=2, tau=0.2, lr=lr),
            functools.partial(ipo_loss, tau=0.2),
            None,
            "soft",
        ),
        "ipo_hard": (
            lambda: ipo(P, mu, steps=2, tau=0.2, lr=lr, labels="hard"),
            functools.partial(ipo_loss, tau=0.2),
            None,
            "hard",
        ),
        "ipo_nu": (
            lambda: ipo(P, mu, steps=2, tau=0.2, lr=lr, nu=nu),
            functools.partial(ipo_loss, tau=0.2),
            nu,
            "soft",
        ),
        "dpo": (
            lambda: dpo(P, mu, steps=2, beta=0.4, lr=lr),
            functools.partial(dpo_loss, beta=0.4),
            None,
            "soft",
        ),
        "cdpo": (
            lambda: dpo(P, mu, steps=2, beta=0.4, label_smoothing=0.15, lr=lr),
            functools.partial(dpo_loss, beta=0.4, label_smoothing=0.15),
            None,
            "soft",
        ),
        "online_ipo": (
            lambda: online_ipo(P, mu, steps=2, tau=0.2, lr=lr),
            functools.partial(ipo_loss, tau=0.2),
            lambda p: p,
            "soft",
        ),
        "online_dpo": (
            lambda: online_dpo(P, mu, steps=2, beta=0.4, lr=lr),
            functools.partial(dpo_loss, beta=0.4),
            lambda p: p,
            "soft",
        ),
        "ipo_md": (
            lambda: ipo_md(P, mu, steps=2, tau=0.2, mixture=0.3, lr=lr),
            functools.partial(ipo_loss, tau=0.2),
            lambda p: geometric_mixture(p, mu, 0.3),
            "soft",
        ),
    }
    call, loss, pop_nu, labels = run[name]
    traj = call()
    torch.testing.assert_close(traj.policies[0], mu, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        traj.policies[1], _one_step_by_hand(P, mu, loss, pop_nu, labels, lr), rtol=1e-12, atol=1e-14
    )
    # The recorded loss is the population loss at the iterate before each update.
    ref0 = population_loss(mu.log(), P, mu, loss, nu=pop_nu, labels=labels)
    torch.testing.assert_close(traj.losses[0], ref0, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# optimisers


def test_gradient_descent_step_by_hand():
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 4, generator=gen, dtype=F64)
    grad = torch.randn(3, 4, generator=gen, dtype=F64)
    lr = torch.tensor([0.1, 1.0, 2.5], dtype=F64)
    opt = GradientDescent(lr)
    new, state = opt.update(theta, grad, opt.init(theta), 0)
    expected = torch.stack([theta[i] - float(lr[i]) * grad[i] for i in range(3)])
    torch.testing.assert_close(new, expected, rtol=0, atol=0)
    assert state == ()


def test_adam_equals_torch_optim_adam_on_the_same_gradients():
    gen = torch.Generator().manual_seed(1)
    b, k, steps = 3, 5, 60
    theta0 = torch.randn(b, k, generator=gen, dtype=F64)
    # Gradients across scales (1e-9 .. 1e3), so the eps term and bias correction both matter.
    scales = torch.logspace(-9, 3, steps, dtype=F64)[:, None, None]
    grads = scales * torch.randn(steps, b, k, generator=gen, dtype=F64)
    lr = torch.tensor([1e-3, 0.05, 0.7], dtype=F64)
    opt = Adam(lr)
    theta, state = theta0, opt.init(theta0)
    mine = []
    for t in range(steps):
        theta, state = opt.update(theta, grads[t], state, t)
        mine.append(theta)
    for i in range(b):
        p = theta0[i].clone().requires_grad_(True)
        peer = torch.optim.Adam([p], lr=float(lr[i]), betas=(0.9, 0.999), eps=1e-8, foreach=False)
        for t in range(steps):
            p.grad = grads[t, i].clone()
            peer.step()
            torch.testing.assert_close(
                mine[t][i], p.detach(), rtol=1e-12, atol=1e-12, msg=f"row {i}, step {t}"
            )


def test_adam_trajectory_equals_torch_optim_adam_on_population_loss():
    # End to end: offline IPO with optimizer="adam" against torch.optim.Adam driving autograd of
    # population_loss. The engine renormalises the logits after each step; the loss gradient sums
    # to zero (shift invariance), so the policies must agree although the raw logits differ.
    gen = torch.Generator().manual_seed(2)
    k, steps, lr, tau = 4, 40, 0.05, 0.25
    P = random_game(k, seed=gen)
    mu = _simplex(gen, k)
    traj = ipo(P, mu, steps=steps, tau=tau, lr=lr, optimizer="adam")
    theta = mu.log().clone().requires_grad_(True)
    peer = torch.optim.Adam([theta], lr=lr, foreach=False)
    loss = functools.partial(ipo_loss, tau=tau)
    for t in range(steps):
        peer.zero_grad()
        population_loss(theta, P, mu, loss).backward()
        peer.step()
        torch.testing.assert_close(
            traj.policies[t + 1], torch.softmax(theta.detach(), 0), rtol=1e-11, atol=1e-13
        )


# ---------------------------------------------------------------------------------------------
# batching: one batched call == the per-row unbatched calls


BATCH = 3
K_BATCH = 4


def _batch_inputs():
    gen = torch.Generator().manual_seed(5)
    P = torch.stack([random_game(K_BATCH, seed=gen) for _ in range(BATCH)])
    mu = torch.stack([_simplex(gen, K_BATCH) for _ in range(BATCH)])
    nu = torch.stack([_simplex(gen, K_BATCH) for _ in range(BATCH)])
    return P, mu, nu


# name -> (batched kwargs, per-row kwargs builder). Hyperparameters vary per row.
TAUS = [0.1, 0.4, 1.5]
BATCH_CASES = {
    "online_ipo": ({"tau": TAUS}, lambda i: {"tau": TAUS[i]}),
    "ipo_md": (
        {"tau": TAUS, "mixture": [0.0, 0.3, 1.0]},
        lambda i: {"tau": TAUS[i], "mixture": [0.0, 0.3, 1.0][i]},
    ),
    "ipo": ({"tau": TAUS, "nu": "nu"}, lambda i: {"tau": TAUS[i], "nu": "nu"}),
    "dpo": (
        {"beta": TAUS, "label_smoothing": [0.0, 0.1, 0.3]},
        lambda i: {"beta": TAUS[i], "label_smoothing": [0.0, 0.1, 0.3][i]},
    ),
    "online_dpo": ({"beta": TAUS, "labels": "hard"}, lambda i: {"beta": TAUS[i], "labels": "hard"}),
    "slic": (
        {"beta": TAUS, "optimizer": "adam", "lr": [0.01, 0.02, 0.05]},
        lambda i: {"beta": TAUS[i], "optimizer": "adam", "lr": [0.01, 0.02, 0.05][i]},
    ),
    "gpo_savage": ({"beta": TAUS}, lambda i: {"beta": TAUS[i]}),
    "nash_md": ({"tau": TAUS}, lambda i: {"tau": TAUS[i]}),
    "nash_md_const": (
        {"tau": TAUS, "eta": [2.0, 1.0, 0.5]},
        lambda i: {"tau": TAUS[i], "eta": [2.0, 1.0, 0.5][i]},
    ),
    "nash_md_pg": (
        {"tau": TAUS, "mixture": [0.0, 0.5, 0.9]},
        lambda i: {"tau": TAUS[i], "mixture": [0.0, 0.5, 0.9][i]},
    ),
    "rlhf": ({"beta": TAUS, "nu": "nu"}, lambda i: {"beta": TAUS[i], "nu": "nu"}),
}


def _resolve(kwargs: dict, nu: torch.Tensor) -> dict:
    return {key: (nu if value == "nu" else value) for key, value in kwargs.items()}


@pytest.mark.parametrize("case", sorted(BATCH_CASES))
def test_batched_call_equals_unbatched_rows(case):
    name = "nash_md" if case == "nash_md_const" else case
    P, mu, nu = _batch_inputs()
    batched_kwargs, row_kwargs = BATCH_CASES[case]
    steps = 60
    traj = ALGORITHMS[name](P, mu, steps=steps, **_resolve(batched_kwargs, nu))
    assert traj.batched and traj.log_policies.shape == (BATCH, steps + 1, K_BATCH)
    for i in range(BATCH):
        kwargs = {key: (nu[i] if value == "nu" else value) for key, value in row_kwargs(i).items()}
        row = ALGORITHMS[name](P[i], mu[i], steps=steps, **kwargs)
        assert not row.batched
        torch.testing.assert_close(traj.policies[i], row.policies, rtol=0, atol=1e-13)
        if row.losses is not None:
            torch.testing.assert_close(traj.losses[i], row.losses, rtol=1e-13, atol=1e-13)


def test_batch_broadcasts_a_single_game_over_taus_and_mus():
    # One game, B reference policies and B taus: each row equals the unbatched run.
    P, mu, _ = _batch_inputs()
    traj = online_ipo(P[0], mu, steps=40, tau=TAUS)
    for i in range(BATCH):
        row = online_ipo(P[0], mu[i], steps=40, tau=TAUS[i])
        torch.testing.assert_close(traj.policies[i], row.policies, rtol=0, atol=1e-13)
    # And one game, one mu, B taus.
    traj = online_ipo(P[0], mu[0], steps=40, tau=TAUS)
    for i in range(BATCH):
        row = online_ipo(P[0], mu[0], steps=40, tau=TAUS[i])
        torch.testing.assert_close(traj.policies[i], row.policies, rtol=0, atol=1e-13)


def test_sampled_labels_are_reproducible_from_the_seed():
    P, mu, _ = _batch_inputs()
    a = ipo(P, mu, steps=20, tau=0.5, labels=3, seed=4)
    b = ipo(P, mu, steps=20, tau=0.5, labels=3, seed=4)
    c = ipo(P, mu, steps=20, tau=0.5, labels=3, seed=5)
    torch.testing.assert_close(a.log_policies, b.log_policies, rtol=0, atol=0)
    assert not torch.equal(a.log_policies, c.log_policies)


def test_inputs_are_not_modified():
    P, mu, nu = _batch_inputs()
    P_np, mu_np, nu_np = P.numpy().copy(), mu.numpy().copy(), nu.numpy().copy()
    P_arg, mu_arg, nu_arg = P.numpy(), mu.numpy(), nu.numpy()  # numpy views share memory with torch
    ipo(P_arg, mu_arg, steps=5, nu=nu_arg)
    online_ipo(P_arg, mu_arg, steps=5)
    ALGORITHMS["nash_md"](P_arg, mu_arg, steps=5)
    ALGORITHMS["rlhf"](P_arg, mu_arg, steps=5, beta=0.5)
    assert (P_arg == P_np).all() and (mu_arg == mu_np).all() and (nu_arg == nu_np).all()
