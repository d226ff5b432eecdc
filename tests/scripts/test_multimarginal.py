"""scripts/figures/multimarginal.py: its settings come from the experiment multimarginal_figure (fast), and a QUICK
run end to end (slow)."""

import argparse

import pytest

from experiments._common import build_trainer

from ._scripts import load_figure, run_quick

mm = load_figure("multimarginal")


def test_experiment_config_has_the_scripts_settings():
    # The published run's settings (Albergo, Boffi, Lindsey, Vanden-Eijnden, ICLR 2024, in spirit).
    full = mm.settings(mm.compose_config())
    assert full == {"marginals": ("moons", "checkerboard", "8gaussians"), "train_steps": 6000, "batch": 512,
                    "width": 256, "depth": 3, "alpha": 1.0, "edge_fraction": 0.5, "ode_steps": 20, "lr": 3e-3,
                    "warmup_steps": 300, "path_steps": 300, "n_plot": 1000, "n_eval": 1000}  # fmt: skip
    trainer = build_trainer(mm.compose_config(), run_dir=None)
    assert (trainer.steps_per_call, trainer.ema_decay, trainer.ema_warmup, trainer.progress) == (
        1000,
        0.999,
        True,
        False,
    )
    quick = mm.settings(mm.compose_config(quick=True))
    assert {k: quick[k] for k in ("train_steps", "batch", "width", "depth", "ode_steps", "warmup_steps")} == {
        "train_steps": 200, "batch": 128, "width": 32, "depth": 2, "ode_steps": 5, "warmup_steps": 10}  # fmt: skip
    assert (quick["path_steps"], quick["n_plot"], quick["n_eval"]) == (20, 200, 200)


def test_command_line_edits_the_experiment():
    args = argparse.Namespace(alpha=0.5, edge_fraction=0.25, train_steps=400, marginals=("moons", "rings"))
    cfg = mm.compose_config(True, mm.cli_overrides(args))
    s = mm.settings(cfg)
    assert (s["alpha"], s["edge_fraction"], s["train_steps"], s["warmup_steps"]) == (0.5, 0.25, 400, 20)
    assert s["marginals"] == ("moons", "rings") and cfg.net.num_marginals == 3
    assert build_trainer(cfg, run_dir=None).steps_per_call == 400


@pytest.mark.slow  # trains a small net for 200 steps and optimises three paths: about 30 s on 2 cores
def test_quick_run_writes_its_figures(tmp_path):
    numbers = run_quick("multimarginal", tmp_path, timeout=900)
    for name in ("all_pairs.png", "correspondences.png", "paths.png", "numbers.json"):
        assert (tmp_path / name).exists(), name
    assert numbers["config"]["quick"] is True and len(numbers["path_optimisation"]) == 3
