"""``ALGORITHMS``: every exact algorithm of the suite by name, each ``(P, mu, *, steps, **hyper) -> Trajectory``.

The entries are compositions, not copies: the preference-loss algorithms share one engine
(``preference.preference_optimization``: sampler x labels x loss), Nash-MD and Nash-MD-PG share the
mixture, Nash-MD-PG and RLHF share the exact policy gradient; the rest of the DPO family
(``FAMILY``) shares the autograd engine of ``objective``. ``tau`` works as the KL strength of every
entry but ORPO, whose ``lam`` weighs an odds ratio and is no KL strength (DPO-family entries read
``tau`` as ``beta``), and ``lr`` as the step size of every entry (Nash-MD reads it as ``eta``), so
a sweep can call them all alike.

Every entry runs through the shared loop (``loop.run``), whose divergence check
(``divergence.check_run``) raises ``DivergenceError`` (a ``FloatingPointError`` and a
``ValueError``) instead of returning inf, NaN or iterates beyond float64's resolution, naming the
step, the batch row and the argument the caller passed (``lr``, or ``tau`` / ``beta`` when the
default ``lr`` derived from it is at fault).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from prefopt_toy.losses.gpo import GPO_FUNCTIONS

from .adaptive import beta_dpo
from .mirror_descent import nash_md, nash_md_pg
from .preference import dpo, gpo, ipo, ipo_md, online_dpo, online_ipo, rso, slic
from .reference_free import orpo, simpo
from .rlhf import rlhf
from .shaped import dpop, rdpo
from .staged import iterative_dpo, sdpo
from .trajectory import Trajectory
from .unpaired import kto

Algorithm = Callable[..., Trajectory]


def _gpo_entry(f: str) -> Algorithm:
    entry = functools.partial(gpo, f=f)
    functools.update_wrapper(entry, gpo)
    return entry  # type: ignore[return-value]


ALGORITHMS: MappingProxyType[str, Algorithm] = MappingProxyType(
    {
        "dpo": dpo,
        "ipo": ipo,
        "slic": slic,
        "online_dpo": online_dpo,
        "online_ipo": online_ipo,
        "ipo_md": ipo_md,
        "nash_md": nash_md,
        "nash_md_pg": nash_md_pg,
        "rlhf": rlhf,
        **{f"gpo_{f}": _gpo_entry(f) for f in GPO_FUNCTIONS},
        "kto": kto,
        "simpo": simpo,
        "orpo": orpo,
        "rdpo": rdpo,
        "dpop": dpop,
        "beta_dpo": beta_dpo,
        "rso": rso,
        "sdpo": sdpo,
        "iterative_dpo": iterative_dpo,
    }
)
"""Name -> algorithm. Each returns a :class:`Trajectory`; see the README's "Algorithms" section."""

# The fixed point each algorithm converges to, as the name of a ``Trajectory.target``.
FIXED_POINTS: MappingProxyType[str, str | None] = MappingProxyType(
    {
        "dpo": "rlhf_optimum",
        "ipo": "ipo_optimum",
        "slic": None,  # a set of minimisers in general (hinge)
        "online_dpo": None,  # its own stationary point (Calandriello et al. App. F), no closed form
        "online_ipo": "regularized_nash",
        "ipo_md": "ipo_md_fixed_point",
        "nash_md": "regularized_nash",
        "nash_md_pg": "ipo_md_fixed_point",
        "rlhf": "rlhf_optimum",
        **{f"gpo_{f}": None for f in GPO_FUNCTIONS},
        "kto": None,  # no closed form; the beta -> 0 limit is known (dynamics.unpaired)
        "simpo": None,  # rlhf_optimum(P, uniform, beta / L, nu) only with equal lengths, gamma = 0
        "orpo": None,
        "rdpo": "rdpo_optimum",
        "dpop": None,  # a kink, not a point, once the penalty is active
        "beta_dpo": None,  # a joint fixed point with the running statistics
        "rso": "rlhf_optimum",  # with loss="dpo" (the default); ipo_optimum with loss="ipo"
        "sdpo": "sdpo_optimum",
        "iterative_dpo": None,  # online-DPO stationary point ("initial"), a vertex ("previous")
    }
)

FAMILY: tuple[str, ...] = (
    "kto",
    "simpo",
    "orpo",
    "rdpo",
    "dpop",
    "beta_dpo",
    "rso",
    "sdpo",
    "iterative_dpo",
)
"""The rest of the DPO family (``ALGORITHMS`` entries with their own data models); the
algorithms before them are the suite's core, which ``plots.notebook.zoo_runs`` draws by default."""


def run_algorithm(name: str, P: Any, mu: Any, **kwargs: Any) -> Trajectory:
    """``ALGORITHMS[name](P, mu, **kwargs)`` with a clear error for an unknown name.

    Each entry's docstring cites its paper (Rafailov et al. arXiv:2305.18290v3, Azar et al.
    arXiv:2310.12036v2, Munos et al. arXiv:2312.00886v4, Calandriello et al. arXiv:2403.08635v1).
    """
    if name not in ALGORITHMS:
        raise ValueError(f"name must be one of {sorted(ALGORITHMS)}, got {name!r}")
    return ALGORITHMS[name](P, mu, **kwargs)
