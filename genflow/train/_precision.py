"""Precision policies for training: full precision, or bf16 compute with fp32 master parameters.

A policy decides in which dtype the training loss is computed. The trainer keeps one copy of everything in full
precision (the master parameters, their gradients, the optimizer state, the EMA and the checkpoints) and asks the
policy for the loss of the model at those parameters, inside the jitted step:

    loss(p) = policy.loss(model(p), key, batch).

``FullPrecision()`` (the default) computes with the model as it is. ``MixedPrecision()`` follows Micikevicius et al.
(2018) with the param/compute/output split of jmp's ``Policy``: params stay fp32, the network's layers compute in
bf16, and the loss comes back in fp32. Since the cast ``p -> bf16(p)`` is differentiated like any other op, the
gradient of ``loss(bf16(p))`` with respect to ``p`` is an fp32 array, so the optimizer sees fp32 gradients and
updates fp32 parameters: small updates are not rounded away as they would be on bf16 weights.

References:
    Micikevicius et al., "Mixed Precision Training", ICLR 2018.
    Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", 2019.
    jmp (DeepMind's JAX mixed-precision library): ``jmp.Policy(param_dtype, compute_dtype, output_dtype)``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.nn._conv import Conv2d

# The layers that do a network's arithmetic: matrix products, convolutions, attention and embedding tables. Norms
# are left out on purpose: equinox's LayerNorm and GroupNorm, and genflow's GroupNorm, take their statistics in
# float32 or wider whatever the input dtype, so they need no policy of their own.
COMPUTE_LAYERS: tuple[type, ...] = (
    eqx.nn.Linear,
    eqx.nn.Conv,
    eqx.nn.ConvTranspose,
    eqx.nn.MultiheadAttention,
    eqx.nn.Embedding,
    Conv2d,
)

_ALLOWED = "genflow.train.FullPrecision() or genflow.train.MixedPrecision(compute_dtype=jnp.bfloat16)"


def _is_float(x: Any) -> bool:
    return eqx.is_array(x) and jnp.issubdtype(x.dtype, jnp.floating)


def cast_floats(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating-point array cast to ``dtype``; integer arrays, keys and non-arrays untouched."""
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if _is_float(x) else x, tree)


class AbstractPrecision(eqx.Module):
    """A precision policy: the dtype in which the trainer computes a model's loss.

    The policy never changes the parameters it is given; it changes only how the loss is computed from them.
    """

    @abc.abstractmethod
    def loss(self, model: Any, key: PRNGKeyArray, batch: Any) -> Float[Array, ""]:
        """The training loss of ``model`` on ``batch`` under this policy, in the parameters' precision."""

    @abc.abstractmethod
    def check(self, model: Any) -> None:
        """Raise a ValueError, before anything compiles, if the policy cannot apply to ``model``."""


class FullPrecision(AbstractPrecision):
    """Compute the loss with the model as it is (float32, or float64 under ``jax_enable_x64``).

    The trainer's default: the loss is ``model.loss(key, batch)`` and nothing else, so the training step traces
    to exactly the same program, and gives bit-identical numbers, as a trainer without precision policies.
    """

    def loss(self, model: Any, key: PRNGKeyArray, batch: Any) -> Float[Array, ""]:
        return model.loss(key, batch)

    def check(self, model: Any) -> None:
        del model  # full precision applies to any model


class _ComputeIn(eqx.Module):
    """A layer whose parameters are already in ``dtype`` and whose floating inputs are cast to ``dtype``."""

    layer: eqx.Module
    dtype: np.dtype = eqx.field(static=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = cast_floats((args, kwargs), self.dtype)
        return self.layer(*args, **kwargs)


class MixedPrecision(AbstractPrecision):
    r"""bf16 compute, fp32 master parameters, fp32 loss (Micikevicius et al. 2018).

    Inside the training step, every layer of a ``compute_layers`` class (linear, convolution, attention,
    embedding) gets its parameters cast to ``compute_dtype`` and casts its floating inputs to it, so its matrix
    products run in bf16 and return bf16; the elementwise ops between two such layers then run in bf16 too. The
    loss is cast back to the parameters' dtype. With $c$ the cast to bf16 and $\theta$ the fp32 parameters,

    $$\mathcal{L}(\theta) = \mathrm{fp32}\big(\ell(f_{c(\theta)}(c(x)), y)\big), \qquad
    \nabla_\theta \mathcal{L} \in \mathbb{R}^{|\theta|}_{\mathrm{fp32}},$$

    and the optimizer state and the EMA stay fp32 because they are built from $\theta$ and its gradient.

    What stays in fp32, and why:

    - everything outside the network's layers: noise schedules, interpolant coefficients, log-SNRs, the time $t$,
      the loss weighting, base distributions and bijection log-determinants. The batch is not cast either, since
      models draw $t$ and the noise in the data's dtype: bf16 keeps 8 significant bits, so a log-SNR or
      $\alpha_t x_0 + \sigma_t \epsilon$ computed in it would carry relative errors of $2^{-8} \approx 0.4\%$
      before the network is even called;
    - time embeddings: $\sin(1000\, t\, \omega_k)$ with $t$ rounded to bf16 would move the phase by up to 2 rad
      at $t \approx 1$ (half a bf16 ulp of $t$, $2^{-9}$, times 1000). The sinusoid (and Gaussian Fourier
      features) are computed from fp32 $t$ and enter the network through its first linear layer, which casts
      them to bf16;
    - normalisation statistics: equinox's and genflow's norms compute means and variances in fp32 at least.

    No loss scaling: bf16 has float32's 8 exponent bits, so gradients that fit in fp32 (down to $10^{-38}$)
    do not underflow in bf16. Scaling is what float16, with 5 exponent bits (smallest normal $6 \times 10^{-5}$),
    needs, and why float16 is refused here.

    Args:
        compute_dtype: the layers' compute dtype: ``jnp.bfloat16`` (the default, also accepted as the string
            ``"bfloat16"`` handed to ``jnp.dtype``), or float32/float64 (casts that change nothing under fp32 and
            fp64 parameters respectively; useful to check that the policy alone leaves the numbers unchanged).
        compute_layers: the layer classes that compute in ``compute_dtype`` (default ``COMPUTE_LAYERS``); add your
            own layer classes here if a network of yours does its arithmetic elsewhere.

    References:
        Micikevicius et al., "Mixed Precision Training", ICLR 2018.
        Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", 2019.
    """

    compute_dtype: np.dtype = eqx.field(static=True)
    compute_layers: tuple[type, ...] = eqx.field(static=True)

    def __init__(self, compute_dtype: Any = jnp.bfloat16, compute_layers: Sequence[type] = COMPUTE_LAYERS):
        self.compute_dtype = _check_compute_dtype(compute_dtype)
        layers = tuple(compute_layers) if isinstance(compute_layers, (list, tuple)) else (compute_layers,)
        if not layers or not all(isinstance(c, type) and issubclass(c, eqx.Module) for c in layers):
            raise ValueError(
                f"compute_layers={compute_layers!r} is invalid: must be a non-empty sequence of equinox layer "
                "classes (e.g. genflow.train.COMPUTE_LAYERS)"
            )
        self.compute_layers = layers

    def _is_layer(self, x: Any) -> bool:
        return isinstance(x, self.compute_layers)

    def cast(self, model: Any) -> Any:
        """``model`` with its compute layers running in ``compute_dtype`` (a transient copy for one loss call).

        Also usable for bf16 inference, ``precision.cast(state.ema_model).sample(key, n)``: the solver's state
        stays fp32 and only the network's layers run in bf16.
        """

        def wrap(x):
            return _ComputeIn(cast_floats(x, self.compute_dtype), self.compute_dtype) if self._is_layer(x) else x

        return jax.tree_util.tree_map(wrap, model, is_leaf=self._is_layer)

    def loss(self, model: Any, key: PRNGKeyArray, batch: Any) -> Float[Array, ""]:
        loss = self.cast(model).loss(key, batch)
        # fp32 out (fp64 under jax_enable_x64): the dtype the master parameters were built in.
        return loss.astype(jax.dtypes.canonicalize_dtype(jnp.float64))

    def check(self, model: Any) -> None:
        layers = [x for x in jax.tree_util.tree_leaves(model, is_leaf=self._is_layer) if self._is_layer(x)]
        if not layers:
            names = ", ".join(c.__qualname__ for c in self.compute_layers)
            dtype = self.compute_dtype.name
            raise ValueError(
                f"MixedPrecision(compute_dtype={dtype}) finds no layer to compute in {dtype} in "
                f"{type(model).__name__} (it looks for {names}); allowed for this model: FullPrecision() "
                "(train/precision=full), or MixedPrecision(compute_layers=...) naming the classes of its layers"
            )


def _check_compute_dtype(value: Any) -> np.dtype:
    allowed = "bfloat16, float32 or float64"
    try:
        dtype = jnp.dtype(value)
    except TypeError as err:
        raise ValueError(f"compute_dtype={value!r} is invalid: not a dtype; allowed: {allowed}") from err
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"compute_dtype={value!r} is invalid: not a floating-point dtype; allowed: {allowed}")
    # A narrower exponent range than float32's needs loss scaling (float16's gradients underflow below 6e-5).
    if jnp.finfo(dtype).maxexp < jnp.finfo(jnp.float32).maxexp:
        raise ValueError(
            f"compute_dtype={value!r} is invalid: its exponent range is narrower than float32's, so gradients "
            f"would underflow without loss scaling, which genflow does not do; allowed: {allowed}"
        )
    return dtype


def check_precision(precision: Any) -> None:
    """Raise a ValueError naming ``train.precision``, its value and the allowed policies, unless it is a policy."""
    if not isinstance(precision, AbstractPrecision):
        raise ValueError(
            f"train.precision={precision!r} is invalid; allowed: {_ALLOWED} (in configs: train/precision=full or "
            "train/precision=bf16)"
        )
