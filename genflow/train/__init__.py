"""Training: scan-chunked trainer, EMA, atomic checkpoints, metrics logging, precision policies (bf16 mixed
precision). Optimizers are plain optax."""

from genflow.train._checkpoint import CheckpointManager
from genflow.train._hooks import SampleHook, sample_with_reference, write_sample_figure
from genflow.train._logging import MetricsLogger
from genflow.train._plots import plot_image_grid, plot_samples_2d, plot_trajectories_2d
from genflow.train._precision import COMPUTE_LAYERS, AbstractPrecision, FullPrecision, MixedPrecision
from genflow.train._trainer import NonFiniteLossError, Trainer, TrainState, check_schedule, data_mesh

__all__ = [
    "COMPUTE_LAYERS",
    "AbstractPrecision",
    "FullPrecision",
    "MixedPrecision",
    "CheckpointManager",
    "MetricsLogger",
    "NonFiniteLossError",
    "SampleHook",
    "TrainState",
    "Trainer",
    "check_schedule",
    "data_mesh",
    "plot_image_grid",
    "plot_samples_2d",
    "plot_trajectories_2d",
    "sample_with_reference",
    "write_sample_figure",
]
