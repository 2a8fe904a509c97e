r"""The result of running an algorithm: every iterate, the loss, and distances to the theory's targets.

A :class:`Trajectory` keeps log-policies (exact even where a probability underflows), the per-step
loss where the algorithm has one, the game, the reference policy and the hyperparameters it ran
with, so it can compute on request the KL to any target, the exploitability, and the distance to
``regularized_nash``, ``rlhf_optimum``, ``ipo_optimum`` or ``ipo_md_fixed_point`` for the same
hyperparameters. Batched runs carry a leading batch axis; ``traj[i]`` is row ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefopt_toy.solutions.nash import nash_equilibrium
from prefopt_toy.solutions.optima import ipo_optimum, rdpo_optimum, rlhf_optimum
from prefopt_toy.solutions.regularized import ipo_md_fixed_point, regularized_nash

from .batch import policy_batch

TARGETS = (
    "regularized_nash",
    "rlhf_optimum",
    "ipo_optimum",
    "ipo_md_fixed_point",
    "nash_equilibrium",
    "rdpo_optimum",
    "sdpo_optimum",
)


@dataclass(frozen=True)
class Trajectory:
    """Iterates of one algorithm run (or a batch of runs).

    References
    ----------
    The targets are those of Munos et al., arXiv:2312.00886v4 (Theorem 1, the KL to the
    regularised Nash), Calandriello et al., arXiv:2403.08635v1 (Prop. 4.1, 5.2) and Azar et al.,
    arXiv:2310.12036v2 (Eq. (9), App. B Prop. 4).
    """

    log_policies: Tensor
    """Log-policies, shape (steps + 1, K), or (B, steps + 1, K) for a batch; row 0 is the start."""
    losses: Tensor | None
    """Expected loss at each step's iterate before the update, shape (steps,) or (B, steps); None
    for algorithms with no loss (Nash-MD)."""
    algorithm: str
    """Registry name of the algorithm."""
    P: Tensor
    """Preference matrix, (K, K) or (B, K, K)."""
    mu: Tensor
    """Reference policy, (K,) or (B, K)."""
    hyper: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters as run: numbers, or (B,) tensors for a batch (tau, beta, mixture, lr, nu, ...)."""

    # ------------------------------------------------------------------ shape and conversion

    @property
    def batched(self) -> bool:
        """Whether there is a leading batch axis."""
        return self.log_policies.ndim == 3

    @property
    def policies(self) -> Tensor:
        """Probabilities, shape (steps + 1, K) or (B, steps + 1, K)."""
        return self.log_policies.exp()

    @property
    def final(self) -> Tensor:
        """The last iterate, shape (K,) or (B, K)."""
        return self.policies[..., -1, :]

    @property
    def steps(self) -> int:
        """Number of updates."""
        return self.log_policies.shape[-2] - 1

    def __len__(self) -> int:
        if not self.batched:
            raise TypeError("an unbatched Trajectory has no len(); use .steps")
        return self.log_policies.shape[0]

    def __getitem__(self, i: int) -> Trajectory:
        """Row ``i`` of a batched trajectory, as an unbatched one."""
        if not self.batched:
            raise TypeError("indexing needs a batched Trajectory")
        hyper = {
            k: (v[i] if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == len(self) else v)
            for k, v in self.hyper.items()
        }
        return Trajectory(
            self.log_policies[i],
            None if self.losses is None else self.losses[i],
            self.algorithm,
            self.P[i],
            self.mu[i],
            hyper,
        )

    def rows(self) -> list[Trajectory]:
        """All rows of a batch (or ``[self]``)."""
        return [self[i] for i in range(len(self))] if self.batched else [self]

    def to_numpy(self) -> dict[str, np.ndarray]:
        """``{"policies": ..., "losses": ...}`` as numpy arrays (losses omitted when None)."""
        out = {"policies": self.policies.numpy()}
        if self.losses is not None:
            out["losses"] = self.losses.numpy()
        return out

    def to_dataframe(self) -> Any:
        """A long-format pandas DataFrame: one row per (run, step) with ``pi_0..pi_{K-1}`` and the loss."""
        import pandas as pd  # optional dependency, imported only here

        frames = []
        for b, row in enumerate(self.rows()):
            pol = row.policies.numpy()
            data: dict[str, Any] = {"run": b, "step": np.arange(pol.shape[0])}
            for y in range(pol.shape[1]):
                data[f"pi_{y}"] = pol[:, y]
            loss = np.full(pol.shape[0], np.nan)
            if row.losses is not None:
                loss[:-1] = row.losses.numpy()
            data["loss"] = loss
            frames.append(pd.DataFrame(data))
        frame = pd.concat(frames, ignore_index=True)
        frame.attrs["algorithm"] = self.algorithm
        return frame

    # ------------------------------------------------------------------ diagnostics

    def target(self, name: str, **override: Any) -> Tensor:
        """The reference solution ``name`` for this run's game and hyperparameters, (K,) or (B, K).

        ``name`` is one of ``TARGETS``; ``rdpo_optimum`` reads ``alpha`` and ``lengths``,
        ``sdpo_optimum`` (``rlhf_optimum`` at ``beta / stages``) reads ``stages``. Strengths come from ``hyper`` (``tau``, or ``beta`` for
        ``rlhf_optimum``), and can be overridden by keyword. So does ``nu``, the pair distribution
        of ``rlhf_optimum`` and ``ipo_optimum``: the offline runs record the pairs they drew (``mu``
        unless given ``nu``); for a run without one the solvers' default ``nu = mu`` applies.
        """
        if name not in TARGETS:
            raise ValueError(f"name must be one of {TARGETS}, got {name!r}")
        if self.batched:
            return torch.stack([row.target(name, **override) for row in self.rows()])
        hyper = {**self.hyper, **override}

        def need(key: str) -> Any:
            value = hyper.get(key)
            if value is None:
                raise ValueError(
                    f"target {name!r} needs {key!r}; pass it: traj.target({name!r}, {key}=...)"
                )
            return float(value) if isinstance(value, Tensor) and value.numel() == 1 else value

        if name == "nash_equilibrium":
            return nash_equilibrium(self.P)
        if name == "regularized_nash":
            return regularized_nash(self.P, self.mu, need("tau"))
        if name == "ipo_md_fixed_point":
            return ipo_md_fixed_point(self.P, self.mu, need("tau"), need("mixture"))
        nu = hyper.get("nu")
        if name == "ipo_optimum":
            return ipo_optimum(self.P, self.mu, need("tau"), nu)
        strength = hyper.get("beta", hyper.get("tau"))
        if strength is None:
            raise ValueError(
                f"target {name!r} needs 'beta'; pass it: traj.target({name!r}, beta=...)"
            )
        strength = float(strength)
        if name == "rdpo_optimum":
            return rdpo_optimum(self.P, self.mu, strength, need("alpha"), need("lengths"), nu)
        if name == "sdpo_optimum":  # T stages of DPO, each from the last: beta / T
            if isinstance(nu, Tensor) and nu.ndim == 2:
                raise ValueError("target 'sdpo_optimum' needs one nu for every stage")
            return rlhf_optimum(self.P, self.mu, strength / float(need("stages")), nu)
        return rlhf_optimum(self.P, self.mu, strength, nu)

    def _as_target(self, target: str | Any, override: dict[str, Any]) -> Tensor:
        if isinstance(target, str):
            return self.target(target, **override)
        return policy_batch(target, "target", self.log_policies.shape[-1], positive=False)

    def kl_to(self, target: str | Any, **override: Any) -> Tensor:
        r""":math:`KL(\text{target} \| \pi_t)` at every step, shape (steps + 1,) or (B, steps + 1).

        ``target`` is a policy or a name of ``TARGETS``. This is the quantity of the Nash-MD bound
        (Munos et al., arXiv:2312.00886v4, Theorem 1).
        """
        t = self._as_target(target, override)  # (K,) or (B, K)
        t = t[..., None, :]
        log_t = torch.where(t > 0, t.log(), 0.0)
        terms = torch.where(t > 0, t * (log_t - self.log_policies), 0.0)
        return terms.sum(-1).clamp_min(0.0)

    def distance_to(self, target: str | Any, **override: Any) -> Tensor:
        """Total variation distance ``0.5 * ||pi_t - target||_1`` at every step."""
        t = self._as_target(target, override)[..., None, :]
        return 0.5 * (self.policies - t).abs().sum(-1)

    def exploitability(self) -> Tensor:
        r""":math:`\max_y (P\pi_t)_y - 1/2` at every step (unregularised game), shape (steps + 1,) or (B, steps + 1)."""
        wins = self.policies @ self.P.transpose(-1, -2)  # (..., T+1, K): (P pi_t)_y
        return (wins.max(-1).values - 0.5).clamp_min(0.0)
