"""``ALGORITHMS``: every exact algorithm of the suite by name, each ``(P, mu, *, steps, **hyper) -> Trajectory``.

The entries are compositions, not copies: the preference-loss algorithms share one engine
(``preference.preference_optimization``: sampler x labels x loss), Nash-MD and Nash-MD-PG share the
mixture, Nash-MD-PG and RLHF share the exact policy gradient. ``tau`` works as the KL strength of
every entry (DPO-family entries read it as ``beta``) and ``lr`` as the step size of every entry
(Nash-MD reads it as ``eta``), so a sweep can call them all alike.

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

from .mirror_descent import nash_md, nash_md_pg
from .preference import dpo, gpo, ipo, ipo_md, online_dpo, online_ipo, slic
from .rlhf import rlhf
from .trajectory import Trajectory

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
    }
)


def run_algorithm(name: str, P: Any, mu: Any, **kwargs: Any) -> Trajectory:
    """``ALGORITHMS[name](P, mu, **kwargs)`` with a clear error for an unknown name.

    Each entry's docstring cites its paper (Rafailov et al. arXiv:2305.18290v3, Azar et al.
    arXiv:2310.12036v2, Munos et al. arXiv:2312.00886v4, Calandriello et al. arXiv:2403.08635v1).
    """
    if name not in ALGORITHMS:
        raise ValueError(f"name must be one of {sorted(ALGORITHMS)}, got {name!r}")
    return ALGORITHMS[name](P, mu, **kwargs)
