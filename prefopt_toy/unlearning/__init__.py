"""Unlearning tasks: questions with a forget or retain role, their answers, and the reference.

- ``task``: :class:`UnlearningTask`, C contexts (questions) over one set of K answers, a reference
  ``mu`` (the model after fine-tuning, before unlearning), each context's role ("forget" or
  "retain"), its true answer, the plausible alternates of a forget context, an optional refusal
  answer ("I don't know") and, implied by the rest, the implausible answers;
  ``teaching_task`` (the README's example) and ``random_task``.

The exact dynamics of gradient ascent, NPO, DPO to a refusal and AltPO on a task live in
``prefopt_toy.dynamics`` (``unlearn``); the losses in ``prefopt_toy.losses.unlearning``.
"""

from .task import ROLES, UnlearningTask, random_task, teaching_task

__all__ = ["ROLES", "UnlearningTask", "random_task", "teaching_task"]
