"""Every experiment config composes, instantiates and trains a few steps; bad configs fail before compiling."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments._common import ConfigError, build_hooks, build_trainer, validate
from experiments.train import train

from .conftest import CONFIG_DIR

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def test_there_are_experiments():
    assert "fm_8gaussians_moons" in EXPERIMENTS


# UNet variants (labels with CFG, condition channels) are covered in the fast suite by small nets and analytic
# fields; only fm_digits smoke-trains a UNet there (smd_digits' UNet MixtureDenoiser has a fast unit test in tests/smd).
# Each family keeps at least one experiment smoke run in the fast suite (fm_8gaussians_moons, fm_digits for the UNet,
# si_8gaussians_moons, si_ot_coupling, limited_samples, diffusion_2d, smd_gmm_grid, flow_nsf_moons, lightsb_swiss_roll,
# sb_cfm_8gaussians_moons); the others' models, objectives and samplers have fast tests in their family's folder.
SLOW_EXPERIMENTS = {"fm_digits_cfg", "si_inpainting", "si_superres", "diffusion_digits_cfg", "smd_digits",
                    "flow_smooth_torus", "flow_snf_double_well", "diffusion_digits", "lightsb_eot_benchmark",
                    "flow_realnvp_banana_rkl", "flow_cnf_moons", "flow_mixflow_banana", "dsbm_8gaussians_moons",
                    "multimarginal", "ode_vs_sde", "fm_digits", "interpolants_couplings", "eot_benchmark",
                    "sb_cfm_eot_benchmark", "dsbm_eot_benchmark", "dsbm_eot_benchmark_curve", "gaussian_bridge",
                    "gaussian_bridge_sb_cfm",
                    # figure scripts' variants of experiments covered above or slow
                    "multimarginal_figure", "smd_few_steps", "diffusion_samplers", "smooth_flows_torus",
                    "snf_double_well", "mixflows",
                    # a family's second and third runs: fm_8gaussians_moons, si_8gaussians_moons and sb_cfm stay fast
                    "si_ot_coupling", "limited_samples", "lightsb_swiss_roll"}  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPERIMENTS else n for n in EXPERIMENTS]
)
def test_experiment_runs_a_few_steps(make_cfg, tmp_path, name):
    # 7 steps with steps_per_call=10 (TINY): any num_steps runs, whatever the chunk length.
    cfg = make_cfg(f"experiment={name}", "train.num_steps=7")
    if cfg.train.unroll is True:  # conv nets (train.unroll=1 is the default): unrolled chunks compile in proportion
        # to their length, so keep them short,
        # and the UNet tiny (one level, 8 channels): the wiring is under test here, not the size (~30 s -> ~8 s)
        tiny = ["net.base_channels=8", "net.channel_mults=[1]", "net.emb_dim=16"]
        cfg = make_cfg(
            f"experiment={name}", "train.num_steps=7", "train.steps_per_call=2", "sampler.num_steps=2", *tiny
        )
    state = train(cfg, tmp_path)
    assert int(state.step) == 7
    for leaf in jax.tree_util.tree_leaves(state.model):
        if hasattr(leaf, "dtype") and np.issubdtype(leaf.dtype, np.floating):
            assert np.all(np.isfinite(np.asarray(leaf)))
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "metrics.jsonl").exists()
    assert (tmp_path / "checkpoints" / "ckpt_000000007.eqx").exists()
    assert (tmp_path / "figures" / "samples.png").exists()


def test_default_config_runs(make_cfg, tmp_path):
    train(make_cfg(), tmp_path)
    assert (tmp_path / "figures" / "trajectories.png").exists()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["train.num_steps=0"], r"train\.num_steps=0 is invalid: must be a positive integer"),
        (["train.batch_size=0"], r"train\.batch_size=0 is invalid"),
        (["train.steps_per_call=-5"], r"train\.steps_per_call=-5 is invalid"),
        (["data.name=moonz"], r"data: .*moonz.*moons"),
        (["net.data_dim=3"], r"net\.data_dim=3 does not match the data: .*\(3,\).*\(2,\)"),
        (["data=digits"], r"net\.data_dim=2 does not match the data: .*\(1, 8, 8\)"),
        (["sampler.num_steps=0"], r"sampler: .*num_steps"),
        (["optim._args_.1._target_=optax.adamx"], r"optim: .*optax\.adamx"),
        (["optim._args_.1.learning_rate.peak_value=-1"], r"optim\._args_\.1\.learning_rate\.peak_value=-1 is invalid"),
        (["net.activation=swish"], r"net: .*swish"),
        (["eval.num_samples=0"], r"eval\.num_samples=0"),
        (["eval.num_trajectories=1.5"], r"eval\.num_trajectories=1\.5 is invalid: must be an integer"),
        (["train.checkpoint_every=null"], r"train\.checkpoint_every=None is invalid"),
        (["train.ema_decay=abc"], r"train\.ema_decay='abc' is invalid: must be a number in \[0, 1\)"),
        (["train.keep_checkpoints=0"], r"train\.keep_checkpoints=0 is invalid: must be a positive integer"),
        (["train.progress=maybe"], r"train\.progress='maybe' is invalid: must be true or false"),
        (["sampler=tsit5", "sampler.rtol=-1"], r"sampler: rtol=-1 is invalid: must be a positive number"),
        (["sampler=euler_maruyama"], r"model: .*flow matching samples with an ODE solver"),
        (["+optim._args_.1.weight_decay=0.1"], r"optim: .*adam\(\) got an unexpected keyword argument 'weight_decay'"),
        (["train.precision=bf16"], r"train\.precision='bf16' is invalid; allowed: the config group train/precision"),
        (
            ["train/precision=bf16", "train.precision.compute_dtype=float16"],
            r"train\.precision: compute_dtype='float16' is invalid: .*allowed: bfloat16, float32 or float64",
        ),
        (
            ["train/precision=bf16", "experiment=lightsb_swiss_roll"],
            r"train\.precision: .* finds no layer to compute in bfloat16 in LightSB .*allowed for this model: Full",
        ),
    ],
)
def test_bad_config_names_key_value_and_allowed(make_cfg, overrides, match, tmp_path):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError, match=match):
        validate(cfg)
    with pytest.raises(ConfigError):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing ran


def test_resume_with_a_different_model_is_refused(make_cfg, tmp_path):
    train(make_cfg(), tmp_path)
    with pytest.raises(ConfigError, match=r"net=.*'width': 32.* differs from the run saved"):
        train(make_cfg("net.width=32"), tmp_path)
    with pytest.raises(ConfigError, match=r"optim=.*differs from the run saved"):
        train(make_cfg("optim._args_.0.max_norm=5.0"), tmp_path)
    with pytest.raises(ConfigError, match=r"train\.batch_size=32 differs"):
        train(make_cfg("train.batch_size=32"), tmp_path)
    with pytest.raises(ConfigError, match=r"train\.precision=.*MixedPrecision.* differs from the run saved"):
        train(make_cfg("train/precision=bf16"), tmp_path)
    with pytest.raises(ConfigError, match=r"train\.resume=false but .* already holds checkpoints"):
        train(make_cfg("train.resume=false"), tmp_path)
    train(make_cfg("train.eval_every=10"), tmp_path)  # cadence may change


def test_nan_in_cli_run_stops_and_keeps_last_good_checkpoint(make_cfg, tmp_path):
    from genflow.train import NonFiniteLossError

    # Adam moves every parameter by ~lr per step, so lr=1e30 overflows the network within a few steps.
    cfg = make_cfg("optim=adam_constant", "optim.learning_rate.value=1e30", "train.num_steps=200")
    with pytest.raises(NonFiniteLossError, match=r"not finite at step \d+"):
        train(cfg, tmp_path)
    ckpts = sorted(Path(tmp_path / "checkpoints").glob("ckpt_*.eqx"))
    assert ckpts, "the last good state must be checkpointed"


@pytest.mark.parametrize(
    "group,name",
    [(g, p.stem) for g in ("sampler", "coupling", "interpolant") for p in sorted((CONFIG_DIR / g).glob("*.yaml"))],
)
def test_every_group_option_instantiates(group, name):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    obj = instantiate(OmegaConf.load(CONFIG_DIR / group / f"{name}.yaml"), _convert_="all")
    assert type(obj).__module__.startswith("genflow.")


def test_optim_config_is_an_optax_schedule(make_cfg):
    from hydra.utils import instantiate

    lr = "optim._args_.1.learning_rate"
    cfg = make_cfg("train.num_steps=110", f"{lr}.peak_value=1.0", f"{lr}.warmup_steps=10", f"{lr}.end_value=0.0")
    s = instantiate(cfg.optim._args_[1].learning_rate)  # linear warm-up, then cosine decay to end_value
    assert float(s(0)) == 0.0 and abs(float(s(10)) - 1.0) < 1e-6 and abs(float(s(110))) < 1e-6
    assert abs(float(s(60)) - 0.5) < 1e-6  # half-way down the cosine (Loshchilov & Hutter, ICLR 2017)
    for name in ("adam", "adamw", "adam_constant"):
        validate(make_cfg(f"optim={name}"))


def test_warmup_longer_than_the_run_is_clamped_with_a_warning(make_cfg):
    cfg = make_cfg("train.num_steps=7")  # configs/optim/adam.yaml warms up over 100 steps
    with pytest.warns(UserWarning, match=r"warmup_steps=100 is not shorter than the schedule .*clamped to 6"):
        validate(cfg)
    assert cfg.optim._args_[1].learning_rate.warmup_steps == 6


def test_trainer_and_hooks_are_instantiated_from_configs(make_cfg, tmp_path):
    from genflow.train import FullPrecision, MixedPrecision, SampleHook, Trainer

    cfg = make_cfg("train.ema_decay=0.99", "eval.num_samples=32")
    trainer = build_trainer(cfg, tmp_path)
    assert isinstance(trainer, Trainer) and trainer.ema_decay == 0.99 and trainer.run_dir == tmp_path
    assert isinstance(trainer.precision, FullPrecision)
    bf16 = build_trainer(make_cfg("train/precision=bf16"), tmp_path).precision
    assert isinstance(bf16, MixedPrecision) and bf16.compute_dtype == jnp.bfloat16
    (hook,) = build_hooks(cfg, validate(cfg), tmp_path)
    assert isinstance(hook, SampleHook) and hook.num_samples == 32
    assert build_hooks(make_cfg("callbacks=none"), None, tmp_path) == []


def test_debug_config_runs_any_experiment_briefly(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("config", overrides=["experiment=si_8gaussians_moons", "debug=default"])
    assert (cfg.train.num_steps, cfg.train.steps_per_call) == (7, 5)  # debug comes after the experiment
    state = train(cfg, tmp_path)
    assert int(state.step) == 7
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("ckpt_*.eqx")) == [
        "ckpt_000000005.eqx",
        "ckpt_000000007.eqx",
    ]
