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
        k_draw, k_proj = jax.random.split(jax.random.fold_in(self.key, step))
        x, ref, _ = sample_with_reference(state.ema_model, k_draw, self.data, self.num_samples)
        metrics = {
            "energy_distance": float(energy_distance(flatten_samples(x), flatten_samples(ref))),
            "sliced_w2": float(sliced_w2(k_proj, flatten_samples(x), flatten_samples(ref))),
        }
        if self.plot:
            write_sample_figure(self.run_dir / "figures" / f"samples_{step:07d}.png", x, ref, f"step {step}")
        return metrics


def sample_with_reference(model, key, data, num: int, **opts: Any) -> tuple[Any, Any, Any]:
    """``num`` model samples, ``num`` fresh data examples, and the sampler's NFE (None if the model has no solver).

    Models with ``solve_like`` sample from the data batch: with its labels, or from the start and condition a
    data-dependent coupling derives from it (an in-painting mask), so samples and references correspond.
    """
    k_model, k_data = jax.random.split(key)
    batch = data.sample(k_data, num)
    ref = batch["x"] if isinstance(batch, dict) else batch
    if hasattr(model, "solve_like"):
        sol = model.solve_like(k_model, batch, **opts)
    elif hasattr(model, "solve"):
        sol = model.solve(k_model, num, **opts)
    else:
        return model.sample(k_model, num, **opts), ref, None
    return sol.y, ref, sol.nfe


def write_sample_figure(path, samples, reference=None, title: str = "") -> Path:
    """A scatter plot for 2D data, an image grid otherwise."""
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return plot_samples_2d(path, samples, reference, title)
    return plot_image_grid(path, samples[:64], title)
