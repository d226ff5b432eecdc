"""The trainer: many optimizer steps per jit call, EMA, checkpoints, NaN guard, exact resume.

One ``eqx.filter_jit`` call runs ``steps_per_call`` optimizer steps under ``lax.scan``; synthetic data is sampled
and finite datasets are minibatched inside that call from the state's key, so Python runs once per chunk. The
whole state (parameters, EMA, optimizer state, step, key) is saved at chunk boundaries, which makes a resumed run
compute exactly the same numbers as an uninterrupted one.

Data parallelism: with more than one device the trainer builds a one-axis mesh named ``'data'``, replicates the state
(``NamedSharding(mesh, P())``) and constrains every sampled batch to ``P('data')``, so each device computes the loss
on its slice and XLA all-reduces the gradients. The code is the same on 1..N devices; with one device no sharding
is applied at all.

Precision: the loss inside the step is computed by a precision policy (genflow/train/_precision.py).
``FullPrecision()``, the default, is the model's own loss; ``MixedPrecision()`` runs the network's layers in bf16
while the parameters, gradients, optimizer state, EMA and checkpoints stay fp32.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray
from tqdm.auto import tqdm

from genflow._base import trainable_filter
from genflow.train._checkpoint import CheckpointManager
from genflow.train._logging import MetricsLogger
from genflow.train._precision import AbstractPrecision, FullPrecision, check_precision


def _is_shape(x) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; carries the first bad ``step`` and the last good checkpoint step."""

    def __init__(self, step: int, checkpoint_step: int | None, what: str = "loss"):
        self.step, self.checkpoint_step = step, checkpoint_step
        where = f"step {checkpoint_step}" if checkpoint_step is not None else "none written"
        when = f"at step {step}" if what == "loss" else f"by step {step}"
        super().__init__(f"{what} is not finite {when}; training stopped (last good checkpoint: {where})")


class TrainState(eqx.Module):
    """Everything a run needs to continue: model, EMA model, optimizer state, step and key."""

    model: eqx.Module
    ema_model: eqx.Module
    opt_state: Any
    step: Int[Array, ""]
    key: PRNGKeyArray


Hook = Callable[[TrainState, int], "dict[str, Any] | None"]


def ema_decay_at(step: Array, decay: float, warmup: bool = True) -> Array:
    """EMA decay at optimizer step ``step`` (1-based): ``min(decay, (1 + step) / (10 + step))`` with warmup.

    Without warmup a short run's average is dominated by the random initialisation (0.999^1000 = 0.37).

    References:
        Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017 (the warmup form used in diffusers).
    """
    if not warmup:
        return jnp.asarray(decay)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``'data'`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("data",))


def _constrain(tree: Any, sharding: NamedSharding | None) -> Any:
    if sharding is None:
        return tree
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, sharding) if eqx.is_array(x) else x, tree
    )


def _ema_update(ema: Any, new: Any, decay: Array) -> Any:
    """``ema <- decay * ema + (1 - decay) * new`` on the trainable leaves (the others are ``None`` here).

    optax's Polyak average ``incremental_update(a, b, step) = step * a + (1 - step) * b``, with the average as ``a``
    and ``step = decay``: the textbook order (``step = 1 - decay`` on the new parameters) computes
    ``1 - (1 - decay)``, and XLA fuses the other order differently, so either would move the numbers in the last bits.
    """
    return optax.incremental_update(ema, new, decay)


# No buffer donation: the NaN guard checkpoints the state from before the chunk, so its buffers must survive.
@eqx.filter_jit
def _train_chunk(
    data: Any,
    state: TrainState,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    num_steps: int,
    ema_decay: float,
    ema_warmup: bool,
    unroll: int | bool,
    mesh: Mesh | None = None,
    precision: AbstractPrecision = FullPrecision(),
) -> tuple[TrainState, Float[Array, " num_steps"], Bool[Array, ""]]:
    batch_sharding = None if mesh is None else NamedSharding(mesh, P("data"))
    spec = trainable_filter(state.model)
    frozen = eqx.filter(state.model, spec, inverse=True)

    # The policy computes the loss (bf16 layers, say) from the fp32 master parameters; value_and_grad below then
    # returns fp32 gradients, and the optimizer state, the EMA and the NaN guard all see fp32 numbers.
    def loss_fn(params, key, batch):
        return precision.loss(eqx.combine(params, frozen), key, batch)

    def body(carry, step):
        params, ema, opt_state, key = carry
        key, k_data, k_loss = jax.random.split(key, 3)
        batch = _constrain(data.sample(k_data, batch_size), batch_sharding)
        loss, grads = jax.value_and_grad(loss_fn)(params, k_loss, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        decay = ema_decay_at(step.astype(jnp.float32), ema_decay, ema_warmup)
        return (params, _ema_update(ema, params, decay), opt_state, key), loss

    init = (eqx.filter(state.model, spec), eqx.filter(state.ema_model, spec), state.opt_state, state.key)
    steps = state.step + 1 + jnp.arange(num_steps)
    (params, ema, opt_state, key), losses = jax.lax.scan(body, init, steps, unroll=unroll)
    # A finite loss can still come with non-finite gradients (e.g. sqrt at 0): the guard checks the parameters too.
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(params)]))
    new = TrainState(
        model=eqx.combine(params, frozen),
        ema_model=eqx.combine(ema, frozen),
        opt_state=opt_state,
        step=state.step + num_steps,
        key=key,
    )
    # Pin the state's output sharding to the input's, so the next chunk call finds the same shardings (no retrace).
    return _constrain(new, None if mesh is None else NamedSharding(mesh, P())), losses, finite


class Trainer:
    """Fits any ``AbstractGenerativeModel`` to any data object with ``sample(key, batch_size)``.

    Args:
        optimizer: an optax transformation, e.g. ``optax.adam(optax.warmup_cosine_decay_schedule(...))``.
        num_steps: total optimizer steps.
        batch_size: examples per step.
        steps_per_call: optimizer steps per jit call (one ``lax.scan``). Any ``num_steps`` works: the last chunk is
            shorter when ``steps_per_call`` does not divide it (one more compilation).
        ema_decay: decay of the exponential moving average of the parameters.
        ema_warmup: ramp the decay up as ``min(ema_decay, (1 + t) / (10 + t))``.
        unroll: ``lax.scan`` unrolling of the steps in a chunk (``True``: fully unrolled, no loop). Convolutional
            nets on CPU need ``True``: XLA:CPU runs convolutions and their gradients inside a loop body 10-50x
            slower than outside one (jax-ml/jax#12868); keep ``steps_per_call`` small then, since compile time
            grows with it.
        run_dir: where metrics.jsonl and checkpoints/ go (``None``: no files are written).
        checkpoint_every: steps between checkpoints (a multiple of ``steps_per_call``; 0: only at the end). The last
            step is always checkpointed.
        keep_checkpoints: how many recent checkpoints to keep.
        eval_every: steps between calls of the evaluation hooks (a multiple of ``steps_per_call``; 0: only at the
            end).
        progress: show a tqdm bar with loss and steps/s.
        tensorboard: also log to TensorBoard when tensorboardX is installed.
        precision: the precision policy of the loss: ``FullPrecision()`` (the default) or
            ``MixedPrecision(compute_dtype=jnp.bfloat16)`` (bf16 compute; parameters, gradients, optimizer state,
            EMA and checkpoints stay fp32). See genflow/train/_precision.py and docs/gpu.md.
        mesh: data parallelism. ``"auto"``: a ``'data'`` mesh over all devices when there is more than one, none
            otherwise; ``None``: never shard; or a ``jax.sharding.Mesh`` with a ``'data'`` axis. ``batch_size`` must
            be a multiple of the mesh's size.
    """

    def __init__(
        self,
        optimizer: optax.GradientTransformation,
        num_steps: int,
        batch_size: int,
        steps_per_call: int = 100,
        ema_decay: float = 0.999,
        ema_warmup: bool = True,
        unroll: int | bool = 1,
        run_dir: str | Path | None = None,
        checkpoint_every: int = 0,
        keep_checkpoints: int = 3,
        eval_every: int = 0,
        progress: bool = True,
        tensorboard: bool = False,
        mesh: Mesh | str | None = "auto",
        precision: AbstractPrecision = FullPrecision(),
    ):
        check_schedule(num_steps, batch_size, steps_per_call, checkpoint_every, eval_every, ema_decay)
        check_precision(precision)
        self.precision = precision
        self.mesh = _resolve_mesh(mesh, batch_size)
        self.optimizer = optimizer
        self.num_steps, self.batch_size, self.steps_per_call = num_steps, batch_size, steps_per_call
        self.ema_decay, self.ema_warmup = ema_decay, ema_warmup
        if not isinstance(unroll, (bool, int)) or (not isinstance(unroll, bool) and unroll < 1):
            raise ValueError(f"train.unroll={unroll!r} is invalid: must be true, false or a positive integer")
        self.unroll = unroll
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.checkpoint_every, self.eval_every = checkpoint_every, eval_every
        self.progress, self.tensorboard = progress, tensorboard
        self.checkpoints = (
            None if self.run_dir is None else CheckpointManager(self.run_dir / "checkpoints", keep_checkpoints)
        )

    def init(self, model: eqx.Module, key: PRNGKeyArray) -> TrainState:
        """A fresh state: EMA starts at the initial parameters, step 0 (the precision policy is checked first)."""
        self.precision.check(model)
        params = eqx.filter(model, trainable_filter(model))
        return self.replicate(TrainState(model, model, self.optimizer.init(params), jnp.asarray(0, jnp.int32), key))

    def replicate(self, state: TrainState) -> TrainState:
        """Place the state's arrays on every device of the mesh (a no-op without a mesh)."""
        if self.mesh is None:
            return state
        sharding = NamedSharding(self.mesh, P())
        return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding) if eqx.is_array(x) else x, state)

    def train_chunk(self, state: TrainState, data: Any, num_steps: int | None = None):
        """Run ``num_steps`` (default ``steps_per_call``) optimizer steps in one jit call.

        Returns ``(state, losses, params_finite)``.
        """
        n = self.steps_per_call if num_steps is None else num_steps
        return _train_chunk(
            data,
            state,
            self.optimizer,
            self.batch_size,
            n,
            self.ema_decay,
            self.ema_warmup,
            self.unroll,
            self.mesh,
            self.precision,
        )

    # -- checkpoints ------------------------------------------------------------------------------------------
    @staticmethod
    def _to_disk(state: TrainState):
        # Typed keys are stored as their raw uint32 data; an eval_shape skeleton carries a ShapeDtypeStruct key.
        key_data = (
            jax.eval_shape(jax.random.key_data, state.key) if _is_shape(state.key) else jax.random.key_data(state.key)
        )
        return (state.model, state.ema_model, state.opt_state, state.step, key_data)

    def save(self, state: TrainState) -> None:
        if self.checkpoints is not None:
            self.checkpoints.save(int(state.step), self._to_disk(state))

    def restore(self, like: TrainState, step: int | None = None) -> TrainState:
        """Load a checkpoint into the skeleton ``like`` (same model/optimizer structure)."""
        model, ema, opt_state, step_arr, key_data = self.checkpoints.restore(self._to_disk(like), step)
        impl = None if _is_shape(like.key) else jax.random.key_impl(like.key)
        state = TrainState(model, ema, opt_state, step_arr, jax.random.wrap_key_data(key_data, impl=impl))
        return state if _is_shape(like.key) else self.replicate(state)

    # -- the loop ---------------------------------------------------------------------------------------------
    def fit(
        self,
        model: eqx.Module,
        data: Any,
        *,
        key: PRNGKeyArray,
        hooks: Sequence[Hook] = (),
        resume: bool = True,
    ) -> TrainState:
        """Train from scratch, or from the latest checkpoint in ``run_dir`` when ``resume``.

        Raises:
            NonFiniteLossError: the loss became NaN/inf. The last good state is checkpointed first.
        """
        state = self.init(model, key)
        if self.checkpoints is not None and self.checkpoints.latest_step() is not None:
            if not resume:
                raise FileExistsError(
                    f"{self.checkpoints.directory} already holds checkpoints and resume=False: starting over would "
                    "mix two runs; use a new run directory, or resume"
                )
            state = self.restore(state)
            self._check_resumable(int(state.step))
        if self.checkpoints is not None:
            self.checkpoints.remove_partial_writes()
        logger = MetricsLogger(self.run_dir, self.tensorboard) if self.run_dir is not None else None
        start = int(state.step)
        if logger is not None:
            logger.truncate_after(start)  # records past the checkpoint are recomputed, bit for bit
        bar = tqdm(total=self.num_steps, initial=start, disable=not self.progress, dynamic_ncols=True)
        try:
            state = self._loop(state, data, hooks, logger, bar)
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        return state

    def _check_resumable(self, step: int) -> None:
        # Chunks start at multiples of steps_per_call; a checkpoint off that grid is a finished run's last step
        # (nothing left to do) or comes from another steps_per_call, whose chunks would round differently.
        if step % self.steps_per_call and step < self.num_steps:
            raise ValueError(
                f"checkpoint step {step} is not a multiple of train.steps_per_call={self.steps_per_call}: resume with "
                "the steps_per_call the run was saved with (the last step of a finished run cannot be extended)"
            )

    def _chunk_length(self, step: int) -> int:
        """Steps to the next multiple of ``steps_per_call``, or to the end of the run.

        Chunks sit on the same grid in a resumed run as in an uninterrupted one, so both compile the same chunk and
        compute the same numbers; a last, shorter chunk costs one more compilation.
        """
        return min(self.steps_per_call - step % self.steps_per_call, self.num_steps - step)

    def _due(self, every: int, step: int) -> bool:
        """Whether a cadence of ``every`` steps (0: only at the end) falls on ``step``."""
        return bool(every and step % every == 0) or step == self.num_steps

    def _loop(self, state, data, hooks, logger, bar):
        step = int(state.step)
        last_saved = self.checkpoints.latest_step() if self.checkpoints is not None else None
        while step < self.num_steps:
            n = self._chunk_length(step)
            t0 = time.perf_counter()
            new_state, losses, finite = self.train_chunk(state, data, n)
            losses, finite = np.asarray(losses), bool(finite)  # the one host sync per chunk
            elapsed = time.perf_counter() - t0
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size or not finite:
                if last_saved != step:
                    self.save(state)
                    last_saved = step if self.checkpoints is not None else last_saved
                first_bad = step + int(bad[0]) + 1 if bad.size else step + n
                raise NonFiniteLossError(first_bad, last_saved, what="loss" if bad.size else "parameters")
            state, step = new_state, step + n
            rate = n / max(elapsed, 1e-9)
            bar.update(n)
            bar.set_postfix(loss=f"{losses.mean():.4g}", steps_s=f"{rate:.0f}")
            record = {"loss": float(losses.mean()), "loss_last": float(losses[-1]), "steps_per_sec": rate}
            if self._due(self.eval_every, step):
                for hook in hooks:
                    record.update(_hook_record(hook(state, step), record))
            if logger is not None:
                logger.log(step, **record)
            if self.checkpoints is not None and self._due(self.checkpoint_every, step):
                self.save(state)
                last_saved = step
        return state


def _hook_record(result: dict | None, record: dict) -> dict:
    result = result or {}
    clash = sorted(set(result) & ({"step"} | set(record)))
    if clash:
        raise ValueError(f"an evaluation hook returned keys {clash} that the trainer already logs; rename them")
    return result


def _resolve_mesh(mesh: Mesh | str | None, batch_size: int) -> Mesh | None:
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"train.mesh={mesh!r} is invalid: must be 'auto', None or a jax.sharding.Mesh")
        mesh = data_mesh() if jax.device_count() > 1 else None
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh) or "data" not in mesh.axis_names:
        raise ValueError(f"train.mesh={mesh!r} is invalid: must be a jax.sharding.Mesh with a 'data' axis")
    if batch_size % mesh.shape["data"]:
        raise ValueError(
            f"train.batch_size={batch_size} is invalid: must be a multiple of the {mesh.shape['data']} devices on "
            "the 'data' mesh axis"
        )
    return mesh


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_schedule(num_steps, batch_size, steps_per_call, checkpoint_every=0, eval_every=0, ema_decay=0.999):
    """Validate the loop's numbers before anything compiles; messages name the key, value and what is allowed."""
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size), ("steps_per_call", steps_per_call)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"train.{name}={value!r} is invalid: must be a positive integer")
    for name, value in (("checkpoint_every", checkpoint_every), ("eval_every", eval_every)):
        if not _is_int(value) or value < 0 or value % steps_per_call:
            raise ValueError(
                f"train.{name}={value!r} is invalid: must be 0 or a multiple of train.steps_per_call={steps_per_call}"
            )
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"train.ema_decay={ema_decay!r} is invalid: must be a number in [0, 1)")
