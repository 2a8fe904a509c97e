"""Training GPT-2 with the shared losses: the trainer, its config, checkpoints and run logs.

- ``config``: ``TrainConfig`` (one frozen dataclass, validated against the loss library);
- ``trainer``: ``Trainer`` and ``train``: the offline step, the online step (pairs from the policy
  or the geometric mixture, labels from a judge) and the evaluation;
- ``online``: the online pieces (sampled pairs, label weights, the Nash-MD-PG surrogate);
- ``checkpoint``, ``state_io``: safetensors checkpoints with exact resume and integrity checks,
  the guard against a non-finite loss; the on-disk format;
- ``runlog``: JSON-lines run logs, read back as records or a DataFrame, and their curves;
- ``parallel``: what the trainer needs to run as one of several processes.
"""

from .checkpoint import (
    CheckpointError,
    CheckpointWarning,
    NonFiniteLossError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig
from .runlog import RunLogError, RunLogger, read_run_log, run_log_curves, run_log_frame
from .trainer import Trainer, train

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "NonFiniteLossError",
    "RunLogError",
    "RunLogger",
    "TrainConfig",
    "Trainer",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "read_run_log",
    "run_log_curves",
    "run_log_frame",
    "save_checkpoint",
    "train",
]
