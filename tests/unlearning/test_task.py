"""Tests of ``prefopt_toy.unlearning`` (the task): validation, the masks, the alternate conditional.

Oracles: per-element loops over the task's fields, numpy renormalisation of ``mu`` on the
alternates, and the ValueError of every broken constraint.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefopt_toy.unlearning import UnlearningTask, random_task, teaching_task

MU = [[0.5, 0.2, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]]


def _task(**overrides):
    fields = dict(
        mu=MU,
        roles=("forget", "retain"),
        true_answers=(0, 1),
        alternates=((1, 2), ()),
        refusal=3,
    )
    fields.update(overrides)
    return UnlearningTask(**fields)


@pytest.mark.parametrize("task", [teaching_task(), random_task(0), random_task(3, n_answers=7)])
def test_masks_partition_each_row(task):
    k = task.n_answers
    for c in range(task.n_contexts):
        for y in range(k):
            kinds = [
                y == task.true_answers[c],
                y in task.alternates[c],
                y == task.refusal,
                bool(task.implausible_mask[c, y]),
            ]
            assert sum(kinds) == 1  # every answer is exactly one kind
            assert bool(task.true_mask[c, y]) == kinds[0]
            assert bool(task.alternate_mask[c, y]) == kinds[1]
            assert bool(task.refusal_mask[c, y]) == kinds[2]
    roles = np.array(task.roles)
    np.testing.assert_array_equal(task.forget_contexts.numpy(), np.flatnonzero(roles == "forget"))
    np.testing.assert_array_equal(task.retain_contexts.numpy(), np.flatnonzero(roles == "retain"))


def test_alternate_conditional_is_mu_renormalised_on_the_alternates():
    task = teaching_task()
    mu = task.mu.numpy()
    got = task.alternate_conditional().numpy()
    for row, c in enumerate(task.forget_contexts.tolist()):
        want = np.zeros(task.n_answers)
        alts = list(task.alternates[c])
        want[alts] = mu[c, alts] / mu[c, alts].sum()
        np.testing.assert_allclose(got[row], want, rtol=1e-14)
    # first two alternates only
    got2 = task.alternate_conditional(augment_k=2).numpy()
    np.testing.assert_allclose(got2[0, [1, 2]], [0.2 / 0.28, 0.08 / 0.28], rtol=1e-14)
    assert got2[0, 3] == 0.0


def test_teaching_task_reference_is_fine_tuned_on_the_truth():
    task = teaching_task()
    mu = task.mu.numpy()
    np.testing.assert_allclose(mu.sum(1), 1.0, atol=1e-15)
    assert (mu.argmax(1) == np.array(task.true_answers)).all()
    assert (mu[:, 0] >= 0.55).all()
    # gibberish (answer 5) is the least likely answer of every context
    assert (mu.argmin(1) == 5).all()


def test_random_task_is_reproducible_and_valid():
    a, b = random_task(7), random_task(7)
    assert torch.equal(a.mu, b.mu) and a.alternates == b.alternates
    assert not torch.equal(a.mu, random_task(8).mu)
    for c in a.forget_contexts.tolist():
        assert len(a.alternates[c]) == 3 and a.true_answers[c] not in a.alternates[c]
    assert a.refusal == a.n_answers - 1
    assert random_task(1, refusal=False).refusal is None


def test_fields_are_converted():
    task = _task(mu=np.array(MU, dtype=np.float32))
    assert task.mu.dtype == torch.float64
    assert task.roles == ("forget", "retain") and task.alternates == ((1, 2), ())
    assert isinstance(task.true_answers, tuple)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"mu": [[0.5, 0.5, 0.0, 0.0], [0.25] * 4]}, "mu must be strictly positive"),
        ({"mu": [[0.5, 0.6, 0.1, 0.1], [0.25] * 4]}, "mu must sum to 1"),
        ({"mu": [0.25] * 4}, r"mu must have shape \(C, K\)"),
        ({"roles": ("forget",)}, "roles must be 2 entries"),
        ({"roles": ("forget", "keep")}, "roles must be entries of"),
        ({"roles": ("retain", "retain"), "alternates": ((), ())}, "at least one 'forget'"),
        ({"true_answers": (0, 4)}, r"true_answers\[1\] must be an answer index"),
        ({"true_answers": (0,)}, "true_answers must have 2 entries"),
        ({"refusal": 0}, "refusal must not be a context's true answer"),
        ({"refusal": 9}, "refusal must be an answer index"),
        ({"alternates": ((), ())}, r"alternates\[0\] must be non-empty"),
        ({"alternates": ((1, 1), ())}, r"alternates\[0\] must not repeat"),
        ({"alternates": ((0, 1), ())}, r"alternates\[0\] must not contain the true answer"),
        ({"alternates": ((1, 3), ())}, r"alternates\[0\] must not contain the refusal"),
        ({"alternates": ((1,), (2,))}, r"alternates\[1\] must be empty"),
        ({"answer_names": ("a", "b")}, "answer_names must be 4 strings"),
    ],
)
def test_bad_task(overrides, match):
    with pytest.raises(ValueError, match=match):
        _task(**overrides)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 0, "n_forget": 7}, "n_forget must be <= n_contexts"),
        ({"seed": 0, "n_alternates": 5}, "n_alternates must be <= 4"),
        ({"seed": 0, "true_boost": float("nan")}, "true_boost must be finite"),
    ],
)
def test_bad_random_task(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_task(**kwargs)
