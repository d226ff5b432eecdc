"""The soft-mixture-denoising network: a latent encoder and a denoiser modulated by the latent (FiLM from z).

SMD makes the backward kernel a continuous mixture over a latent ``z_t = g_xi(eta, x_t, t)``, ``eta ~ N(0, I)``; a
hypernetwork ``f_phi(z_t, t)`` modulates the shared denoiser's hidden layers. Here ``f_phi`` is FiLM: the denoiser
(an ``MLP``, ``ResMLP`` or ``UNet``) is built with a vector condition of size ``latent_dim``, so its embedding is
``e(t, z) = E(t) + V z`` and every hidden layer ``l`` is modulated by ``[gamma_l, beta_l] = W_l silu(e(t, z)) + b_l``.
The official code uses a rank-1-plus-diagonal weight modulation instead; FiLM is the other option the issue allows,
and it needs no change to the shared networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow._checks import check_callable, check_positive
from genflow.nn._mlp import MLP


class LatentEncoder(eqx.Module):
    r"""The latent map of SMD, $z_t = g_\xi(\eta, x_t, t)$: an FiLM MLP on $[\mathrm{vec}(x_t), \eta]$.

    References:
        Li, van Breugel, van der Schaar, "Soft Mixture Denoising: Beyond the Expressive Bottleneck of Diffusion
        Models", ICLR 2024, eq. 10.
    """

    mlp: MLP
    data_size: int = eqx.field(static=True)
    eta_dim: int = eqx.field(static=True)

    def __init__(
        self, data_size: int, eta_dim: int, latent_dim: int, width: int = 128, depth: int = 2, *, key: PRNGKeyArray
    ):
        """Build ``g_xi``: ``data_size`` inputs from ``x_t`` (flattened), ``eta_dim`` from ``eta``."""
        for name, value in (("data_size", data_size), ("eta_dim", eta_dim), ("latent_dim", latent_dim)):
            check_positive(name, value)
        self.data_size, self.eta_dim = int(data_size), int(eta_dim)
        self.mlp = MLP(self.data_size + self.eta_dim, width, depth, out_dim=int(latent_dim), key=key)

    def __call__(
        self, t: Float[ArrayLike, ""], x: Float[Array, " *shape"], eta: Float[Array, " eta_dim"]
    ) -> Float[Array, " latent_dim"]:
        return self.mlp(t, jnp.concatenate([jnp.ravel(x), eta]))


class MixtureDenoiser(eqx.Module):
    r"""SMD's denoiser ``F(t, x_t, eta) = D(t, x_t; f_phi(g_xi(eta, x_t, t), t))``, one example at a time.

    $$z_t = g_\xi(\eta, x_t, t), \qquad e = E(t) + V z_t, \qquad
    h_l \leftarrow h_l \odot (1 + \gamma_l(e)) + \beta_l(e)\ \text{in every hidden layer of } D.$$

    Called as ``net(t, x, eta)``: ``eta`` takes the place of the condition, so the diffusion family's
    parametrizations and losses call it unchanged. ``eta = 0`` everywhere gives the capacity-matched ablation
    (the same network with a deterministic latent). Class conditions cannot be combined with it.

    Args:
        denoiser: the shared denoiser, built with a vector condition ``cond_dim = latent_dim``.
        latent: the latent encoder ``g_xi``.

    References:
        Li, van Breugel, van der Schaar, "Soft Mixture Denoising: Beyond the Expressive Bottleneck of Diffusion
        Models", ICLR 2024, section 4.
        Perez et al. 2018, "FiLM: visual reasoning with a general conditioning layer".
    """

    denoiser: eqx.Module
    latent: LatentEncoder

    def __init__(self, denoiser: eqx.Module, latent: LatentEncoder):
        cond_dim = getattr(getattr(denoiser, "embed", None), "cond_dim", 0)
        latent_dim = latent.mlp.out_dim
        if cond_dim != latent_dim:
            raise ValueError(
                f"denoiser cond_dim={cond_dim!r} must equal the latent size latent_dim={latent_dim!r}: the latent "
                "enters the denoiser as its vector condition"
            )
        if math.prod(denoiser.data_shape) != latent.data_size:
            raise ValueError(
                f"latent data_size={latent.data_size!r} must equal the denoiser's example size "
                f"{math.prod(denoiser.data_shape)} (data_shape={denoiser.data_shape})"
            )
        self.denoiser, self.latent = denoiser, latent

    @property
    def eta_dim(self) -> int:
        """Size of the mixing noise ``eta``."""
        return self.latent.eta_dim

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example ``x``."""
        return tuple(self.denoiser.data_shape)

    def __call__(
        self, t: Float[ArrayLike, ""], x: Float[Array, " *shape"], eta: Float[Array, " eta_dim"]
    ) -> Float[Array, " *shape"]:
        if eta is None or jnp.shape(eta) != (self.eta_dim,):
            raise ValueError(
                f"eta must have shape ({self.eta_dim},) per example, got {None if eta is None else jnp.shape(eta)}"
            )
        return self.denoiser(t, x, self.latent(t, x, eta))


def mixture_denoiser(
    denoiser: Callable[..., eqx.Module] = MLP,
    *,
    eta_dim: int = 8,
    latent_dim: int = 32,
    latent_width: int = 128,
    latent_depth: int = 2,
    key: PRNGKeyArray,
    **denoiser_kwargs: Any,
) -> MixtureDenoiser:
    """Build a :class:`MixtureDenoiser` around a fresh denoiser network of class ``denoiser``.

    Args:
        denoiser: the denoiser's class, ``MLP`` (default), ``ResMLP`` or ``UNet``; any network class that takes
            ``cond_dim`` and ``key`` will do.
        eta_dim: size of the mixing noise ``eta``.
        latent_dim: size of the latent ``z_t``.
        latent_width, latent_depth: the latent encoder's MLP.
        key: random key.
        **denoiser_kwargs: the denoiser's arguments (``data_dim, width, ...`` or ``in_channels, image_size, ...``),
            without ``cond_dim``/``num_classes``/``cond_channels`` (the latent is the denoiser's condition).
    """
    check_callable("denoiser", denoiser, "a network class such as MLP, ResMLP or UNet")
    for name in ("cond_dim", "num_classes", "cond_channels"):
        if denoiser_kwargs.get(name):
            raise ValueError(f"{name}={denoiser_kwargs[name]!r} is not allowed: SMD uses the condition slot for z")
        denoiser_kwargs.pop(name, None)
    k_den, k_lat = jax.random.split(key)
    net = denoiser(cond_dim=int(latent_dim), key=k_den, **denoiser_kwargs)
    size = math.prod(net.data_shape)
    latent = LatentEncoder(size, eta_dim, latent_dim, latent_width, latent_depth, key=k_lat)
    return MixtureDenoiser(net, latent)
