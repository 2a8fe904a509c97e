"""Analyses built on the games, solutions and losses; each module is imported on its own.

- ``displacement``: likelihood displacement in DPO, exactly, on a log-linear policy (the model,
  the closed-form criterion, named examples and their plot);
- ``conventions``: every knob against each paper's symbol and TRL's argument name;
- ``token_reduction``: what averaging log-probs over tokens (TRL's IPO) does to tau.

Nothing is imported here, so that ``prefopt_toy.analysis.conventions`` loads pandas and no
more.
"""
