"""No recompilation, per family: once compiled, training chunks and samplers run again without tracing anything.

A listener on jax's own tracing event counts every jaxpr trace (any jit, including the per-primitive ones of eager
code). After one warm-up call, further calls with fresh keys and the state the previous call returned must trace
nothing: a retrace there means a Python value leaked into a static argument, a dtype or weak type drifted, or a
shape changed between chunks.
"""

from contextlib import contextmanager

import jax
import optax
import pytest

from genflow.bridges import DSBM, BridgeMatching, Forward, LightSB, MixturePotential, entropic_coupling
from genflow.couplings import IndependentCoupling
from genflow.data import Toy2D
from genflow.diffusion import Ancestral, DiffusionModel, ProbabilityFlow
from genflow.flows import AffineTransformer, Flow, coupling_flow
from genflow.interpolants import FlowMatching, LinearInterpolant, SqrtGamma, StochasticInterpolant
from genflow.nn import MLP, mixture_denoiser
from genflow.smd import SMDModel
from genflow.solvers import Euler, EulerMaruyama, Heun
from genflow.train import Trainer

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


@contextmanager
def count_traces():
    traces = []

    def listener(event, duration, **kwargs):
        if event == TRACE_EVENT:
            traces.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield traces
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def assert_no_retrace(fn, num_calls: int = 2):
    """``fn(i)`` for i = 0 (warm-up, compiles) and 1..num_calls, which must trace nothing."""
    keys = [jax.random.key(i) for i in range(num_calls + 1)]  # made outside the counted region
    jax.block_until_ready(fn(keys[0]))
    with count_traces() as traces:
        for key in keys[1:]:
            jax.block_until_ready(fn(key))
    assert not traces, f"{len(traces)} traces after the first call"


def assert_training_chunks_trace_once(model):
    data = Toy2D("moons")
    trainer = Trainer(optax.adam(1e-3), 30, 32, steps_per_call=10, progress=False)
    box = {"state": trainer.init(model, jax.random.key(0))}

    def chunk(_key):
        box["state"], losses, _ = trainer.train_chunk(box["state"], data)
        return losses

    assert_no_retrace(chunk)


def mlp(key=None):
    return MLP(data_dim=2, width=16, depth=1, emb_dim=8, key=jax.random.key(0) if key is None else key)


def flow_matching():
    return FlowMatching(mlp(), data_shape=(2,), sampler=Euler(num_steps=4))


def stochastic_interpolant():
    k1, k2 = jax.random.split(jax.random.key(1))
    return StochasticInterpolant(
        mlp(k1), (2,), denoiser_net=mlp(k2), interpolant=LinearInterpolant(SqrtGamma(0.1)),
        coupling=IndependentCoupling(), sampler=Euler(num_steps=4), eps=0.1,
    )  # fmt: skip


def diffusion():
    return DiffusionModel(mlp(), (2,))


def flow():
    return Flow(coupling_flow(2, AffineTransformer(), num_layers=2, width=8, depth=1,
                              key=jax.random.key(0)))  # fmt: skip


def smd():
    net = mixture_denoiser(MLP, data_dim=2, width=16, depth=1, emb_dim=8, eta_dim=2, latent_dim=4,
                           latent_width=8, latent_depth=1, key=jax.random.key(0))  # fmt: skip
    return SMDModel(net, (2,), sampler=Ancestral(8))


def lightsb():
    return LightSB(MixturePotential(2, 4, key=jax.random.key(0)), eps=0.5)


def bridge_matching():
    return BridgeMatching(mlp(), (2,), eps=0.5, sampler=EulerMaruyama(4), coupling=entropic_coupling(0.5))


def dsbm_stage():
    return DSBM(mlp(), (2,), eps=0.5, sampler=EulerMaruyama(4), num_sim_steps=4).with_stage(Forward())


FAMILIES = [flow_matching, stochastic_interpolant, diffusion, flow, smd, lightsb, bridge_matching, dsbm_stage]


@pytest.mark.parametrize("build", FAMILIES, ids=lambda f: f.__name__)
def test_training_chunks_trace_once(build):
    assert_training_chunks_trace_once(build())


def test_interpolant_samplers_trace_once():
    fm, si = flow_matching(), stochastic_interpolant()
    assert_no_retrace(lambda k: fm.sample(k, 64))
    assert_no_retrace(lambda k: si.sample(k, 64, sampler=EulerMaruyama(num_steps=4)))
    x = Toy2D("moons").sample(jax.random.key(9), 16)
    assert_no_retrace(lambda k: fm.log_prob(x, key=k))


@pytest.mark.parametrize("sampler", [Ancestral(8), ProbabilityFlow(Heun(4))], ids=["ancestral", "pf_heun"])
def test_diffusion_samplers_trace_once(sampler):
    model = diffusion()
    assert_no_retrace(lambda k: model.sample(k, 64, sampler=sampler))


def test_flow_sample_and_log_prob_trace_once():
    model = flow()
    x = Toy2D("moons").sample(jax.random.key(9), 64)
    assert_no_retrace(lambda k: model.sample(k, 64))
    assert_no_retrace(lambda k: model.log_prob(x + jax.random.normal(k, x.shape)))


def test_smd_samples_trace_once():
    model = smd()
    assert_no_retrace(lambda k: model.sample(k, 64))


@pytest.mark.parametrize("build", [lightsb, bridge_matching, dsbm_stage], ids=lambda f: f.__name__)
def test_bridge_samplers_trace_once(build):
    model = build()
    x0 = Toy2D("moons").sample(jax.random.key(9), 32)
    assert_no_retrace(lambda k: model.sample(k, 64))
    assert_no_retrace(lambda k: model.sample_conditional(k, x0))


def test_lightsb_paths_trace_once():
    model = lightsb()
    assert_no_retrace(lambda k: model.sample(k, 64, sampler=EulerMaruyama(4)))
