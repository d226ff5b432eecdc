"""Training through genflow's Trainer: maximum likelihood on banana samples and reverse KL against the banana's
(normalised) log-density, scored by KL, Kish ESS and the log Z estimate (Z = 1)."""

import jax
import jax.numpy as jnp
import optax
import pytest

from genflow.distributions import Banana
from genflow.flows import (
    Flow,
    MaximumLikelihood,
    ReverseKL,
    RQSplineTransformer,
    coupling_flow,
    importance_log_weights,
    importance_summary,
)
from genflow.train import Trainer

# A moderately twisted banana of unit scale, inside the spline interval [-4, 4].
TARGET = Banana(b=0.5, sigma=1.0)
STEPS = 400


def _fit(objective):
    bij = coupling_flow(2, RQSplineTransformer(8, 4.0), num_layers=4, width=32, depth=1, key=jax.random.key(0))
    opt = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 50, decay_steps=STEPS))
    )
    trainer = Trainer(opt, num_steps=STEPS, batch_size=256, steps_per_call=STEPS, ema_decay=0.99, progress=False)
    # Reverse KL ignores the data (only the batch size is used); the banana's exact sampler stands in for it.
    return trainer.fit(Flow(bij, objective=objective), TARGET, key=jax.random.key(1)).ema_model


@pytest.mark.slow  # 400 steps of an 8-knot spline flow: 13-18 s on 2 loaded cores (compile-dominated)
def test_maximum_likelihood_learns_the_banana():
    flow = _fit(MaximumLikelihood())
    x = TARGET.sample(jax.random.key(2), 4000)
    forward_kl = float(jnp.mean(TARGET.log_prob(x) - flow.log_prob(x)))
    # 400 steps reach ~0.03 nats (standard error of the estimate ~0.003); the flow at init (N(0, I)) is at 0.23.
    assert 0.0 < forward_kl + 0.01 and forward_kl < 0.06, forward_kl


@pytest.mark.slow  # as above: 15-18 s
def test_reverse_kl_learns_the_banana_with_high_ess():
    flow = _fit(ReverseKL(TARGET))
    _, log_w = importance_log_weights(flow, TARGET, jax.random.key(3), 4000)
    s = importance_summary(log_w)
    reverse_kl = float(s["reverse_kl_minus_log_z"])  # log Z = 0 for the normalised banana
    # 400 steps reach KL ~0.01 and ESS ~96%; the flow at init (N(0, I)) has KL 0.30 and ESS 13%.
    assert reverse_kl < 0.03, reverse_kl
    assert float(s["ess_fraction"]) > 0.9, s
    assert abs(float(s["log_z"])) < 0.02, s
