r"""The exact side of the bridge: the class distribution each algorithm converges to on a lifted game.

``predict`` solves the class-level game ``P_ext`` from the reference's class distribution
``mu_class`` with the fixed point of each algorithm (the table in :mod:`prefopt_toy.lm.bridge.run`'s
docstring) and optionally runs the exact toy trajectory; ``BRIDGE_ALGORITHMS`` lists the algorithms
it knows. Re-exported by :mod:`prefopt_toy.lm.bridge.run`.

References: as :mod:`prefopt_toy.lm.bridge.run`, the module this one was split from.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float, as_unit_interval

__all__ = ["BRIDGE_ALGORITHMS", "predict"]

# name -> (hyperparameter the strength is read from, uses mixture)
BRIDGE_ALGORITHMS: dict[str, tuple[str, bool]] = {
    "dpo": ("beta", False),
    "ipo": ("tau", False),
    "online_ipo": ("tau", False),
    "nash_md": ("tau", False),
    "nash_md_pg": ("tau", True),
    "ipo_md": ("tau", True),
}
"""Algorithms ``predict`` knows: name -> (KL-strength keyword, whether ``mixture`` is used)."""


def _strength(algorithm: str, beta: Any, tau: Any) -> tuple[str, float]:
    key, _ = BRIDGE_ALGORITHMS[algorithm]
    other = "tau" if key == "beta" else "beta"
    if (beta if other == "beta" else tau) is not None:
        raise ValueError(f"algorithm {algorithm!r} takes {key}, not {other}")
    value = beta if key == "beta" else tau
    if value is None:
        raise ValueError(f"{key} is required for algorithm {algorithm!r}")
    return key, as_positive_float(value, key)


def predict(
    algorithm: str,
    P_ext: Any,
    mu_class: Any,
    *,
    beta: Any = None,
    tau: Any = None,
    mixture: Any = 0.0,
    toy_steps: int = 0,
    toy_lr: Any = None,
) -> tuple[Tensor, Tensor | None]:
    """The exact class distribution ``algorithm`` converges to, and optionally the toy's trajectory.

    Parameters
    ----------
    algorithm : str
        One of ``BRIDGE_ALGORITHMS`` (see the table in :mod:`prefopt_toy.lm.bridge.run`'s docstring).
    P_ext : array-like, shape (K+1, K+1)
        The class-level game, "other" included (``judge.P_ext``).
    mu_class : array-like, shape (K+1,)
        The reference's class distribution (``ClassEstimate.probs``).
    beta : float > 0
        KL strength of ``dpo``.
    tau : float > 0
        KL strength of every other algorithm.
    mixture : float in [0, 1]
        Weight of ``mu`` in the geometric mixture (``ipo_md``, ``nash_md_pg``); must be 0 elsewhere.
    toy_steps : int >= 0
        When positive, also run ``prefopt_toy.ALGORITHMS[algorithm](P_ext, mu_class, steps=toy_steps,
        ...)`` with the same hyperparameters (and ``nu = mu_class`` offline) and return its policies.
    toy_lr : float, optional
        Step size of the toy run (its default when None; ignored by ``nash_md``).

    Returns
    -------
    prediction : Tensor, shape (K+1,), float64
    trajectory : Tensor, shape (toy_steps + 1, K+1), float64, or None when ``toy_steps == 0``

    Raises
    ------
    ValueError
        Unknown algorithm, missing/extra strength, ``mixture`` where it is not used, malformed
        inputs (from the solvers).

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO, Thm. 2);
    Munos et al., arXiv:2312.00886v4 (Nash-MD, Nash-MD-PG); Calandriello et al.,
    arXiv:2403.08635v1 (online IPO Prop. 4.1, IPO-MD Sec. 5).

    Examples
    --------
    >>> pred, _ = predict("online_ipo", [[0.5, 0.9], [0.1, 0.5]], [0.5, 0.5], tau=1.0)
    >>> bool(pred[0] > 0.5)
    True
    """
    import prefopt_toy as pt

    if algorithm not in BRIDGE_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(BRIDGE_ALGORITHMS)}, got {algorithm!r}")
    key, strength = _strength(algorithm, beta, tau)
    m = as_unit_interval(mixture, "mixture")
    uses_mixture = BRIDGE_ALGORITHMS[algorithm][1]
    if not uses_mixture and m != 0.0:
        raise ValueError(f"mixture must be 0 for algorithm {algorithm!r}, got {m}")
    toy_steps = as_int(toy_steps, "toy_steps", minimum=0)
    P_t = pt.check_preference_matrix(P_ext)
    mu_t = torch.as_tensor(mu_class, dtype=torch.float64)
    if mu_t.shape != (P_t.shape[0],):
        raise ValueError(
            f"mu_class must have shape ({P_t.shape[0]},) like P_ext's rows, got {tuple(mu_t.shape)}"
        )

    # Offline pairs are sampled from the reference (``run.preference_dataset``): nu = mu_class, the
    # solvers' default, as in the exact toy runs below. A class the reference never produced
    # (mu_class = 0) is in no pair and gets probability 0.
    if algorithm == "dpo":
        pred = pt.rlhf_optimum(P_t, mu_t, strength)
    elif algorithm == "ipo":
        pred = pt.ipo_optimum(P_t, mu_t, strength)
    elif algorithm in ("online_ipo", "nash_md") or m == 0.0:
        pred = pt.regularized_nash(P_t, mu_t, strength)
    else:  # ipo_md, nash_md_pg with a mixture
        pred = pt.ipo_md_fixed_point(P_t, mu_t, strength, m)

    traj = None
    if toy_steps:
        kwargs: dict[str, Any] = {"steps": toy_steps, key: strength}
        if uses_mixture:
            kwargs["mixture"] = m
        if algorithm in ("dpo", "ipo"):
            kwargs["nu"] = mu_t
        if toy_lr is not None and algorithm != "nash_md":
            kwargs["lr"] = toy_lr
        traj = pt.ALGORITHMS[algorithm](P_t, mu_t, **kwargs).policies
    return pred, traj
