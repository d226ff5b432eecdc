"""Helpers shared by the benchmark scripts: the budget flags, and timings that always measure compile time apart
from run time."""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np

from genflow.train import Trainer


def budget_parser(quick_help: str, smoke_help: str = "tiny budgets (checks that the script runs)"):
    """An argument parser with the ``--smoke`` and ``--quick`` budget flags every benchmark takes."""
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help=smoke_help)
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def machine() -> dict:
    return {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        # Other processes share the cores: the 1/5/15-minute load average says how much of them this run had.
        "load_avg": list(os.getloadavg()),
    }


def time_training(trainer: Trainer, model, data, calls: int, key=None) -> dict:
    """Steps/s of ``trainer.train_chunk`` over ``calls`` compiled calls (the first call is timed separately)."""
    state = trainer.init(model, jax.random.key(1) if key is None else key)
    t0 = time.perf_counter()
    state, losses, _ = jax.block_until_ready(trainer.train_chunk(state, data))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(calls):
        state, losses, _ = trainer.train_chunk(state, data)
        np.asarray(losses)  # the trainer's one host sync per chunk
    run = time.perf_counter() - t0
    steps = calls * trainer.steps_per_call
    return {
        "steps_per_call": trainer.steps_per_call,
        "steps_per_sec": steps / run,
        "first_call_s": first,
        "timed_steps": steps,
    }


def time_sampling(sample, num: int) -> dict:
    """Seconds for ``sample(key)`` drawing ``num`` points, after a compiling call."""
    t0 = time.perf_counter()
    jax.block_until_ready(sample(jax.random.key(3)))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = jax.block_until_ready(sample(jax.random.key(4)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "samples_per_sec": num / seconds, "first_call_s": first}, x
