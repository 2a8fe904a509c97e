r"""Lab checkers for labs 3 and 4: one Nash-MD step, and games where RLHF and Nash disagree.

``check_nash_md_step`` (lab 3) compares the student's closed-form Nash-MD step with transitions
read off ``nash_md`` trajectories (``_nash_md_cases``); ``check_condorcet_disagreement`` and
``check_cycle_disagreement`` (lab 4) take a student-built 3-action game and check, with
``bt_fit``, ``rlhf_optimum``, ``condorcet_winner`` and ``nash_equilibrium`` as oracles, that the
RLHF policy misses the Condorcet winner or is exploitable where the Nash equilibrium is not. All
are re-exported from ``prefopt_toy.labs``.

References: as :mod:`prefopt_toy.labs`, the module this one was split from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE, as_policy
from prefopt_toy.dynamics import nash_md
from prefopt_toy.games.constructors import check_preference_matrix, random_game, three_voter_types
from prefopt_toy.games.properties import condorcet_winner
from prefopt_toy.policies import win_rates
from prefopt_toy.solutions.bt import bt_fit
from prefopt_toy.solutions.nash import exploitability, nash_equilibrium
from prefopt_toy.solutions.optima import rlhf_optimum

from .checking import (
    CheckPassed,
    LabCheckError,
    _answer,
    _call,
    _close,
    _fmt,
    _mismatch,
    _passed,
    _policy_hint,
)

__all__ = ["check_condorcet_disagreement", "check_cycle_disagreement", "check_nash_md_step"]


# ------------------------------------------------------------------------ lab 3: Nash-MD step


def _nash_md_cases() -> list[tuple[str, Tensor, Tensor, Tensor, float, float, Tensor]]:
    """(name, P, mu, pi_t, tau, eta, expected pi_{t+1}), every transition read off ``pt.nash_md``."""
    cases = []
    P1, mu1, tau1, eta1 = (
        three_voter_types(0.1),
        torch.tensor([0.5, 0.3, 0.2], dtype=DTYPE),
        0.1,
        0.5,
    )
    traj = nash_md(P1, mu1, tau=tau1, steps=3, eta=eta1).policies
    for t in (1, 2):
        cases.append(
            (
                f"three voter types (epsilon=0.1), mu=(0.5, 0.3, 0.2), constant eta, step t={t}",
                P1,
                mu1,
                traj[t],
                tau1,
                eta1,
                traj[t + 1],
            )
        )
    P2, mu2, tau2, eta2 = (
        random_game(4, seed=3),
        torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DTYPE),
        0.5,
        1.2,
    )
    traj = nash_md(P2, mu2, tau=tau2, steps=2, eta=eta2).policies
    cases.append(
        (
            "random 4-action game (seed 3), mu=(0.1, 0.2, 0.3, 0.4), constant eta, step t=1",
            P2,
            mu2,
            traj[1],
            tau2,
            eta2,
            traj[2],
        )
    )
    # The decaying schedule of Theorem 1, eta_t = 2 / (tau (t + 2)): t = 0 has eta * tau = 1.
    traj = nash_md(P1, mu1, tau=tau1, steps=4).policies
    for t in (0, 3):
        eta_t = 2.0 / (tau1 * (t + 2))
        cases.append(
            (
                f"three voter types, schedule eta_t = 2/(tau (t+2)), step t={t}",
                P1,
                mu1,
                traj[t],
                tau1,
                eta_t,
                traj[t + 1],
            )
        )
    return cases


def _nash_md_mistakes(
    P: Tensor, mu: Tensor, pi: Tensor, tau: float, eta: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    lp, lm, m = pi.log(), mu.log(), eta * tau
    mix = torch.softmax((1 - m) * lp + m * lm, -1)
    swapped = torch.softmax(m * lp + (1 - m) * lm, -1)
    unnormalised = ((1 - m) * lp + m * lm).exp()
    arithmetic = (1 - m) * pi + m * mu
    return [
        (
            "arithmetic mixture: the mixture is geometric, pi_t^(1 - eta tau) * mu^(eta tau) / Z "
            "(a weighted sum of the logs), not (1 - eta tau) * pi_t + eta tau * mu",
            lambda: torch.softmax(arithmetic.log() + eta * (P @ arithmetic), -1),
        ),
        (
            "wrong mixture direction: the geometric mixture is pi_t^(1 - eta tau) * mu^(eta tau) "
            "(weight eta * tau on mu)",
            lambda: torch.softmax(swapped.log() + eta * (P @ swapped), -1),
        ),
        (
            "the opponent is the mixture pi_t^mu, not pi_t: use P @ pi_mix",
            lambda: torch.softmax(mix.log() + eta * (P @ pi), -1),
        ),
        (
            "the step starts from the mixture: pi_{t+1} is proportional to pi_mix * exp(eta P pi_mix), not pi_t * ...",
            lambda: torch.softmax(lp + eta * (P @ mix), -1),
        ),
        (
            "normalise the mixture before computing its win rates P @ pi_mix",
            lambda: torch.softmax(mix.log() + eta * (P @ unnormalised), -1),
        ),
        (
            "P is transposed: the win rate of action y against pi_mix is (P @ pi_mix)[y]",
            lambda: torch.softmax(mix.log() + eta * (P.T @ mix), -1),
        ),
        (
            "eta is missing in the exponent: exp(eta * P @ pi_mix)",
            lambda: torch.softmax(mix.log() + P @ mix, -1),
        ),
        (
            "the exponent is eta * (P @ pi_mix), not eta * tau * (P @ pi_mix)",
            lambda: torch.softmax(mix.log() + eta * tau * (P @ mix), -1),
        ),
        (
            "the exponent is eta * (P @ pi_mix), not (P @ pi_mix) / tau",
            lambda: torch.softmax(mix.log() + (P @ mix) / tau, -1),
        ),
    ]


def check_nash_md_step(student_nash_md_step: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 3: ``student_nash_md_step(pi, mu, P, tau, eta)``, one closed-form Nash-MD step.

    Expected:

    .. math:: \pi_t^\mu \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}, \qquad
              \pi_{t+1} \propto \pi_t^\mu \exp\bigl(\eta\,P\pi_t^\mu\bigr),

    checked on five transitions ``pi_t -> pi_{t+1}`` read off ``pt.nash_md`` trajectories (constant
    steps on two games, and the decaying schedule :math:`\eta_t = 2/(\tau(t+2))` of Theorem 1,
    including ``t = 0`` where :math:`\eta\tau = 1`).

    Parameters
    ----------
    student_nash_md_step : callable
        Takes ``pi`` (K,), ``mu`` (K,), ``P`` (K, K) float64 tensors and floats ``tau``, ``eta``;
        returns the next policy, shape (K,).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing transition, with a hint when the answer matches a common mistake.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 6, Eq. (8)-(9) and Theorem 1.
    """
    cases = _nash_md_cases()
    for name, P, mu, pi, tau, eta, expected in cases:
        where = f"input '{name}' (pi_t = {_fmt(pi)}, tau={tau:g}, eta={eta:g})"
        got, dtype = _answer(
            "3", "nash_md_step", student_nash_md_step, [pi, mu, P, tau, eta], tuple(mu.shape), where
        )
        if _close(got, expected):
            continue
        hint = _policy_hint(
            got,
            "your policy is not finite",
            "normalise pi_{t+1}",
            _nash_md_mistakes(P, mu, pi, tau, eta),
        )
        raise _mismatch("3", f"nash_md_step on {where}", expected, got, hint, dtype)
    return _passed("3", len(cases))


# ------------------------------------------------------------------- lab 4: RLHF versus Nash

SMALL_BETA = 0.01


def _student_game(exercise: str, make_game: Any) -> tuple[Tensor, Tensor]:
    answer = _call(exercise, "function", make_game, [], "no input (it returns your game)")
    if not (isinstance(answer, (tuple, list)) and len(answer) == 2):
        raise LabCheckError(
            f"exercise {exercise}: return a pair (P, mu), got {type(answer).__name__}"
        )
    P_raw, mu_raw = answer
    try:
        P = check_preference_matrix(P_raw)
    except ValueError as err:
        raise LabCheckError(
            f"exercise {exercise}: your P is not a preference matrix: {err}"
        ) from None
    if tuple(P.shape) != (3, 3):
        raise LabCheckError(
            f"exercise {exercise}: P should be 3 x 3 (three actions), got shape {tuple(P.shape)}"
        )
    try:
        mu = as_policy(mu_raw, "mu", size=3, positive=True)
    except ValueError as err:
        raise LabCheckError(
            f"exercise {exercise}: your mu is not a full-support policy on 3 actions: {err}"
        ) from None
    return P, mu


def _rlhf(exercise: str, P: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
    try:
        # Pairs drawn from mu x mu, for the fit and the optimum alike (nu = mu, passed explicitly).
        return bt_fit(P, nu=mu), rlhf_optimum(P, mu, SMALL_BETA, nu=mu)
    except ValueError as err:
        raise LabCheckError(
            f"exercise {exercise}: the Bradley-Terry fit of your game has no finite maximiser, so RLHF is "
            f"undefined (keep every entry of P strictly between 0 and 1): {err}"
        ) from None


def check_condorcet_disagreement(make_game: Callable[[], Any]) -> CheckPassed:
    r"""Check exercise 4a: a 3-action game whose Condorcet winner RLHF does not pick.

    ``make_game()`` returns ``(P, mu)``. Checked: ``P`` is a 3 x 3 preference matrix
    (``pt.check_preference_matrix``) and ``mu`` a full-support policy; ``P`` has a Condorcet winner
    c (``pt.condorcet_winner``), which is then the Nash equilibrium (``pt.nash_equilibrium``
    plays it with probability 1); and the RLHF optimum ``pt.rlhf_optimum(P, mu, 0.01, nu=mu)``
    (Bradley-Terry reward fitted on pairs drawn from ``mu``) has its largest probability on another
    action, whose fitted reward is above c's.

    Parameters
    ----------
    make_game : callable
        No arguments; returns ``(P, mu)`` (array-likes of shape (3, 3) and (3,)).

    Returns
    -------
    CheckPassed
        Says what was computed: the Condorcet winner, the BT rewards, the RLHF policy.

    Raises
    ------
    LabCheckError
        Naming the broken requirement and the numbers computed.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 (the preference model's Nash equilibrium can differ
    from the RLHF solution); Azar et al., arXiv:2310.12036v2, App. B Prop. 4.
    """
    P, mu = _student_game("4a", make_game)
    c = condorcet_winner(P)
    if c is None:
        raise LabCheckError(
            f"exercise 4a: your game has no Condorcet winner (no action beats both others with "
            f"probability above 1/2); P = {_fmt(P)}. Make one action beat each of the others."
        )
    nash = nash_equilibrium(P)
    if float(nash[c]) < 1.0 - 1e-6:  # a Condorcet winner is the unique Nash equilibrium
        raise LabCheckError(
            f"exercise 4a: the Nash equilibrium {_fmt(nash)} should be pure on y{c}"
        )
    reward, pi = _rlhf("4a", P, mu)
    a = int(pi.argmax())
    computed = (
        f"Condorcet winner y{c} (Nash equilibrium {_fmt(nash)}); Bradley-Terry rewards "
        f"{_fmt(reward)}; RLHF optimum at beta={SMALL_BETA:g}: {_fmt(pi)}"
    )
    if a == c or float(reward[a]) <= float(reward[c]) + 1e-9:
        raise LabCheckError(
            f"exercise 4a: RLHF agrees with the Nash equilibrium on your game: {computed}. RLHF puts most "
            f"mass on y{a}. Hint: the BT fit ranks actions by their win rate against mu, so let another "
            "action win big against the weakest one while losing narrowly to the Condorcet winner."
        )
    return _passed(
        "4a", 3, f"On your game: {computed}.\nThe Nash equilibrium plays y{c}, RLHF plays y{a}."
    )


def check_cycle_disagreement(make_game: Callable[[], Any]) -> CheckPassed:
    r"""Check exercise 4b: a 3-action cyclic game where RLHF is nearly deterministic, the Nash mixed.

    ``make_game()`` returns ``(P, mu)``. Checked: ``P`` is a valid 3 x 3 preference matrix with no
    Condorcet winner; the RLHF optimum ``pt.rlhf_optimum(P, mu, 0.01, nu=mu)`` (pairs from ``mu``)
    puts at least 0.9 on
    one action a; the Nash equilibrium ``pt.nash_equilibrium(P)`` puts at most 1/2 on a. The
    success message also reports the action that best answers the RLHF policy and by how much it
    beats it (``pt.win_rates``, ``pt.exploitability``).

    Parameters
    ----------
    make_game : callable
        No arguments; returns ``(P, mu)``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        Naming the broken requirement and the numbers computed.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 and 3.2 (a Condorcet cycle whose Nash equilibrium is
    mixed while the BT-based solution is not).
    """
    P, mu = _student_game("4b", make_game)
    c = condorcet_winner(P)
    if c is not None:
        raise LabCheckError(
            f"exercise 4b: your game has a Condorcet winner y{c}, so its Nash equilibrium is pure; "
            "make the majority relation a cycle (y0 < y1 < y2 < y0, say)"
        )
    reward, pi = _rlhf("4b", P, mu)
    nash = nash_equilibrium(P)
    a = int(pi.argmax())
    computed = (
        f"Bradley-Terry rewards {_fmt(reward)}; RLHF optimum at beta={SMALL_BETA:g}: {_fmt(pi)}; "
        f"Nash equilibrium {_fmt(nash)}"
    )
    if float(pi[a]) < 0.9:
        raise LabCheckError(
            f"exercise 4b: RLHF is not nearly deterministic on your game: its largest probability is "
            f"{float(pi[a]):.6g} < 0.9 ({computed}). Break the symmetry of the cycle so the BT fit prefers one action."
        )
    if float(nash[a]) > 0.5:
        raise LabCheckError(
            f"exercise 4b: the Nash equilibrium also favours y{a}, playing it with probability "
            f"{float(nash[a]):.6g} > 1/2 ({computed})"
        )
    rates = win_rates(P, pi)
    best = int(rates.argmax())
    return _passed(
        "4b",
        3,
        (
            f"On your game: {computed}.\nAgainst the RLHF policy, y{best} wins with probability "
            f"{float(rates[best]):.4f} (exploitability {exploitability(P, pi):.4f}); no action wins more than 1/2 "
            "against the Nash equilibrium."
        ),
    )
