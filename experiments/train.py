"""Train a genflow model from a Hydra config.

    python experiments/train.py                                  # flow matching on moons
    python experiments/train.py experiment=fm_8gaussians_moons   # a paper/figure experiment
    python experiments/train.py -m data=moons,checkerboard train.seed=0,1

The run directory holds config.yaml (resolved), metrics.jsonl, checkpoints/ and figures/. Re-running with the same
``hydra.run.dir`` resumes from the latest checkpoint and reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import jax
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments._common import (
    ConfigError,
    build_hooks,
    build_model,
    build_trainer,
    check_resumable,
    validate,
)
from genflow._blas import single_threaded_lapack
from genflow.train import NonFiniteLossError, plot_trajectories_2d, write_sample_figure

logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # no TPU/GPU probing noise in run logs


def write_final_figures(cfg: DictConfig, model, data, run_dir: Path) -> dict:
    """samples.png (model against data) and, for 2D flows, trajectories.png."""
    key = jax.random.key(cfg.train.seed + 1)
    k_model, k_data, k_traj = jax.random.split(key, 3)
    samples = model.sample(k_model, cfg.eval.num_samples)
    ref = data.sample(k_data, cfg.eval.num_samples)
    ref = ref["x"] if isinstance(ref, dict) else ref
    figures = {"samples": str(write_sample_figure(run_dir / "figures" / "samples.png", samples, ref, "final"))}
    if samples.ndim == 2 and samples.shape[1] == 2 and hasattr(model, "solve"):
        sol = model.solve(k_traj, cfg.eval.num_trajectories, save_trajectory=True)
        figures["trajectories"] = str(plot_trajectories_2d(run_dir / "figures" / "trajectories.png", sol.ys))
    return figures


def train(cfg: DictConfig, run_dir: Path):
    """Validate, build, fit (resuming if possible), and write the final figures. Returns the final state."""
    data = validate(cfg)
    has_checkpoints = bool(list((run_dir / "checkpoints").glob("ckpt_*.eqx")))
    if has_checkpoints and not cfg.train.resume:
        raise ConfigError(
            f"train.resume=false but {run_dir} already holds checkpoints; allowed: train.resume=true, or a new "
            "run directory (hydra.run.dir=...)"
        )
    check_resumable(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    k_model, k_train = jax.random.split(jax.random.key(cfg.train.seed))
    model = build_model(cfg, tuple(data.event_shape), k_model)
    trainer = build_trainer(cfg, run_dir)
    state = trainer.fit(model, data, key=k_train, hooks=build_hooks(cfg, data, run_dir), resume=cfg.train.resume)
    if cfg.eval.plot:
        figures = write_final_figures(cfg, state.ema_model, data, run_dir)
        (run_dir / "figures" / "figures.json").write_text(json.dumps(figures, indent=2))
    return state


@hydra.main(version_base=None, config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> None:
    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train(cfg, run_dir)
    except ConfigError as err:
        print(f"genflow: bad config: {err}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as err:
        print(f"genflow: {err}", file=sys.stderr)
        sys.exit(3)
    print(f"genflow: run written to {run_dir}")


if __name__ == "__main__":
    main()
