"""Shared builders for the bridge reproduction scripts (LightSB, SB-CFM and DSBM with the shared Trainer).

Each jit call runs ``gcd(steps, 1000 or 500)`` steps: the Trainer needs ``num_steps`` to be a multiple of it.
"""

from __future__ import annotations

import math
import time

import jax
import optax

from genflow.bridges import DSBM, BridgeMatching, LightSB, MixturePotential, entropic_coupling, fit_dsbm
from genflow.nn import MLP
from genflow.solvers import EulerMaruyama
from genflow.train import Trainer


def train_lightsb(
    source, target, data, eps, *, k=50, diagonal=True, s_init=1.0, lr=3e-3, steps=3000, seed=0, objective=None
):
    pot = MixturePotential(
        source.event_shape[0], k, diagonal=diagonal, s_init=s_init, init_data=target, key=jax.random.key(seed)
    )
    model = LightSB(pot, eps=eps, base=source, objective=objective)
    trainer = Trainer(
        optax.adam(lr),
        num_steps=steps,
        batch_size=128,
        steps_per_call=math.gcd(steps, 1000),
        progress=False,
        ema_decay=0.0,
    )
    t0 = time.perf_counter()
    fitted = jax.block_until_ready(trainer.fit(model, data, key=jax.random.key(seed + 1)).model)
    return fitted, time.perf_counter() - t0


def _net(dim, seed, width):
    return MLP(dim, width=width, depth=3, key=jax.random.key(seed))


def train_sbcfm(source, data, eps, *, steps=2000, seed=0, width=128, sim_steps=50, ot=True):
    """SB-CFM; ``ot=False`` is plain bridge matching on the pairs as the data gives them."""
    dim = source.event_shape[0]
    model = BridgeMatching(
        _net(dim, seed, width),
        (dim,),
        eps=eps,
        base=source,
        sampler=EulerMaruyama(num_steps=sim_steps),
        coupling=entropic_coupling(eps) if ot else None,
    )
    opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-3, warmup_steps=100, decay_steps=steps))
    trainer = Trainer(opt, num_steps=steps, batch_size=256, steps_per_call=math.gcd(steps, 500), progress=False)
    t0 = time.perf_counter()
    fitted = jax.block_until_ready(trainer.fit(model, data, key=jax.random.key(seed + 1)).ema_model)
    return fitted, time.perf_counter() - t0


def train_dsbm(
    source, data, eps, *, steps_per_stage=1000, stages=4, seed=0, width=128, sim_steps=50, callback=None, ot_init=False
):
    """DSBM by alternating IMF; ``ot_init`` starts it from minibatch entropic OT pairs instead of independent ones."""
    dim = source.event_shape[0]
    model = DSBM(
        _net(dim, seed, width),
        (dim,),
        eps=eps,
        base=source,
        sampler=EulerMaruyama(num_steps=sim_steps),
        backward_net=_net(dim, seed + 7, width),
        num_sim_steps=20,
        coupling=entropic_coupling(eps) if ot_init else None,
    )
    opt = optax.adam(1e-3)
    trainer = Trainer(
        opt, num_steps=steps_per_stage, batch_size=256, steps_per_call=math.gcd(steps_per_stage, 500), progress=False
    )
    t0 = time.perf_counter()
    fitted = jax.block_until_ready(
        fit_dsbm(model, data, trainer, key=jax.random.key(seed + 1), num_iterations=stages, callback=callback)
    )
    return fitted, time.perf_counter() - t0
