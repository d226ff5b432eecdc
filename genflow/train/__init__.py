"""Training: scan-chunked trainer, EMA, optimizers, atomic checkpoints, metrics logging."""

from genflow.train._checkpoint import CheckpointManager
from genflow.train._logging import MetricsLogger
from genflow.train._optim import make_optimizer, make_schedule
from genflow.train._trainer import NonFiniteLossError, Trainer, TrainState, check_schedule

__all__ = [
    "CheckpointManager",
    "MetricsLogger",
    "NonFiniteLossError",
    "TrainState",
    "Trainer",
    "check_schedule",
    "make_optimizer",
    "make_schedule",
]
