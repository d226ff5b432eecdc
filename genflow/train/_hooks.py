"""Evaluation hooks for :class:`Trainer`: sample the EMA model, score it against fresh data, and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from genflow.metrics import energy_distance, flatten_samples, sliced_w2
from genflow.train._plots import plot_image_grid, plot_samples_2d


class SampleHook:
    """Every evaluation: draw ``num_samples`` from the EMA model, log energy distance and sliced W2 to fresh data,
    and (if ``plot``) write ``figures/samples_<step>.png``.

    Keys are derived from ``seed`` and the step, so an evaluation never perturbs the training key stream.
    """

    def __init__(self, data: Any, run_dir: str | Path, num_samples: int = 2000, plot: bool = True, seed: int = 0):
        self.data, self.run_dir, self.num_samples, self.plot = data, Path(run_dir), num_samples, plot
        self.key = jax.random.key(seed + 7919)

    def __call__(self, state, step: int) -> dict[str, Any]:
        k_model, k_data, k_proj = jax.random.split(jax.random.fold_in(self.key, step), 3)
        x = state.ema_model.sample(k_model, self.num_samples)
        ref = self.data.sample(k_data, self.num_samples)
        ref = ref["x"] if isinstance(ref, dict) else ref
        metrics = {
            "energy_distance": float(energy_distance(flatten_samples(x), flatten_samples(ref))),
            "sliced_w2": float(sliced_w2(k_proj, flatten_samples(x), flatten_samples(ref))),
        }
        if self.plot:
            write_sample_figure(self.run_dir / "figures" / f"samples_{step:07d}.png", x, ref, f"step {step}")
        return metrics


def write_sample_figure(path, samples, reference=None, title: str = "") -> Path:
    """A scatter plot for 2D data, an image grid otherwise."""
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return plot_samples_2d(path, samples, reference, title)
    return plot_image_grid(path, samples[:64], title)
