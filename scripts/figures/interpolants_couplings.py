"""Data-dependent couplings against the independent baseline: in-painting and 4x4 -> 8x8 super-resolution on digits.

    python scripts/figures/interpolants_couplings.py [--quick] [--out scripts/figures/results/interpolants_couplings]

Reproduces the comparison of Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with
data-dependent couplings" (ICML 2024) on sklearn's 8x8 digits. For each task two models with the same UNet and the
same condition are trained:

- coupled: x0 = m(x1) + sigma zeta (in-painting: the known tiles, noise elsewhere; super-resolution: the upsampled
  low-resolution image plus 0.1 noise), with the in-painting velocity masked so known pixels stay fixed;
- independent: x0 ~ N(0, I), conditioned on the same information (in-painting: mask and masked image channels).

Both use the deterministic linear interpolant (gamma = 0) and Heun sampling. Reported per task and model, on the
359 held-out digits: the transport cost E|x1 - x0|^2 of the pairs, the realised displacement E|X1 - x0|^2 of the
learned map, and against the number of velocity evaluations (NFE): the squared error to the truth on the pixels
to fill, the classifier-feature MMD and pixel MMD to the held-out digits, and how often the shipped classifier
gives the sample the true digit's label. Writes grid_<task>.png (corrupted input, samples, truth),
quality_vs_nfe.png and numbers.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from omegaconf import DictConfig

from experiments._common import build_data, build_net, build_sampler, build_trainer, instantiate_at
from experiments.compose import compose
from genflow.data import Digits
from genflow.interpolants import StochasticInterpolant
from genflow.metrics import digits_accuracy, digits_feature_mmd, load_digits_classifier, mmd
from genflow.solvers import Heun

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# The models, the training run and the Heun sweep: configs/experiment/interpolants_couplings.yaml; --quick adds
# configs/debug/interpolants_couplings.yaml.
EXPERIMENT = "interpolants_couplings"
TASKS = ("inpainting", "superres")


def task_config(task: str, coupled: bool, quick: bool = False) -> DictConfig:
    """The experiment composed with ``figure.tasks.<task>`` (and ``figure.baseline`` for the independent model)."""
    figure = compose(EXPERIMENT, quick=quick).figure
    return compose(EXPERIMENT, [*figure.tasks[task], *([] if coupled else figure.baseline)], quick=quick)


def make_coupling(task: str, coupled: bool):
    return instantiate_at(task_config(task, coupled), "model.coupling")


def make_model(cfg: DictConfig, data: Digits, key) -> StochasticInterpolant:
    # The net takes the whole key (not build_model's split of it): the published numbers used this initialisation.
    net = build_net(cfg, key)
    return instantiate_at(cfg, "model", net=net, data_shape=tuple(data.event_shape), sampler=build_sampler(cfg))


def settings(cfg: DictConfig) -> dict:
    """What numbers.json records of the run: the training budget and the sweep."""
    lr = cfg.optim._args_[0].learning_rate
    t = cfg.train
    return dict(num_steps=t.num_steps, batch_size=t.batch_size, steps_per_call=t.steps_per_call,
                heun_steps=list(cfg.figure.heun_steps), lr=lr.peak_value)  # fmt: skip


def train(cfg: DictConfig, k_init, k_train):
    data = build_data(cfg)
    return build_trainer(cfg, run_dir=None).fit(make_model(cfg, data, k_init), data, key=k_train).ema_model


def fill_mask(task: str, cond):
    """Pixels the model has to produce: the missing tiles for in-painting, every pixel for super-resolution."""
    return 1.0 - cond[:, :1] if task == "inpainting" else jnp.ones_like(cond[:, :1])


def evaluate(task: str, model, test: Digits, heun_steps, key) -> dict:
    truth, labels = test.images, test.labels
    n = truth.shape[0]
    k0, kc, ks = jax.random.split(key, 3)
    x0, cond = model.coupling.sampling_pair(kc, model.base.sample(k0, n), truth)
    fill = fill_mask(task, cond)
    clf = load_digits_classifier()
    out = {
        "pair_cost": float(jnp.mean(jnp.sum((truth - x0) ** 2, axis=(1, 2, 3)))),
        "pixels_to_fill": float(jnp.mean(jnp.sum(fill, axis=(1, 2, 3)))),
        "sweep": [],
    }
    samples = {}
    for steps in heun_steps:
        start = time.perf_counter()
        sol = model.solve(ks, n, x0=x0, cond=cond, sampler=Heun(num_steps=steps))
        y = jax.block_until_ready(sol.y)
        err = jnp.sum(fill * (y - truth) ** 2, axis=(1, 2, 3)) / jnp.sum(fill, axis=(1, 2, 3))
        out["sweep"].append(
            {
                "heun_steps": steps,
                "nfe": int(sol.nfe),
                "mse_to_truth": float(jnp.mean(err)),
                "feature_mmd": float(digits_feature_mmd(y, truth, clf)),
                "pixel_mmd": float(mmd(y, truth)),
                "label_accuracy": float(digits_accuracy(y, labels, clf)),
                "displacement": float(jnp.mean(jnp.sum((y - x0) ** 2, axis=(1, 2, 3)))),
                "seconds_incl_compile": round(time.perf_counter() - start, 2),
            }
        )
        samples[steps] = np.asarray(y)
    return out, samples, np.asarray(x0), np.asarray(cond)


def corrupted_view(task: str, x0, cond):
    """What the model is given, drawn as an image: masked digits (missing tiles grey) or the low-resolution one."""
    if task == "inpainting":
        return np.where(cond[:, :1] == 1, cond[:, 1:], 0.0)
    return cond


def plot_grid(path: Path, task: str, rows: dict[str, np.ndarray], num: int = 12) -> None:
    fig, axes = plt.subplots(len(rows), num, figsize=(num * 0.8, len(rows) * 0.9))
    for r, (name, images) in enumerate(rows.items()):
        for c in range(num):
            ax = axes[r, c]
            ax.imshow(np.clip(images[c, 0], -1, 1), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(task, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweeps(path: Path, results: dict) -> None:
    metrics = [("mse_to_truth", "MSE to truth (pixels to fill)"), ("feature_mmd", "classifier-feature MMD$^2$")]
    fig, axes = plt.subplots(len(TASKS), len(metrics), figsize=(9, 6.5))
    for r, task in enumerate(TASKS):
        for c, (key, label) in enumerate(metrics):
            ax = axes[r, c]
            for kind, style in (("coupled", "o-"), ("independent", "s--")):
                sweep = results[task][kind]["sweep"]
                ax.plot([s["nfe"] for s in sweep], [s[key] for s in sweep], style, label=kind)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("NFE (Heun)")
            ax.set_title(f"{task}: {label}", fontsize=9)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "scripts/figures/results/interpolants_couplings")
    p.add_argument("--quick", action="store_true", help="a few training steps: checks the pipeline, not the claim")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = compose(EXPERIMENT, quick=args.quick)
    test = instantiate_at(cfg, "data", split="test", conditional=True)
    results, start = {"settings": settings(cfg)}, time.perf_counter()
    for t, task in enumerate(TASKS):
        results[task], rows = {}, {}
        for kind in ("coupled", "independent"):
            task_cfg = task_config(task, kind == "coupled", args.quick)
            k_init, k_train, k_eval = jax.random.split(jax.random.fold_in(jax.random.key(task_cfg.train.seed), t), 3)
            t0 = time.perf_counter()
            model = train(task_cfg, k_init, k_train)
            train_seconds = time.perf_counter() - t0
            out, samples, x0, cond = evaluate(task, model, test, task_cfg.figure.heun_steps, k_eval)
            results[task][kind] = {**out, "train_seconds": round(train_seconds, 1)}
            rows.setdefault("input", corrupted_view(task, x0, cond))
            rows[f"{kind}\nNFE {2 * max(samples)}"] = samples[max(samples)]
            print(json.dumps({task: {kind: results[task][kind]["sweep"][-1]}}), flush=True)
        rows["truth"] = np.asarray(test.images)
        plot_grid(args.out / f"grid_{task}.png", task, rows)
    plot_sweeps(args.out / "quality_vs_nfe.png", results)
    results["seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "numbers.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
