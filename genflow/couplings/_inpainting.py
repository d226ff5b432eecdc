from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow._checks import check_positive
from genflow.couplings._data_dependent import AbstractDataDependentCoupling, check_images, tile_up


def masked_velocity(v: Float[Array, "*shape"], mask: Float[Array, "*mask_shape"]) -> Float[Array, "*shape"]:
    """``(1 - mask) ∘ v``: zero the velocity on known pixels, so in-painting keeps them fixed along the flow.

    Works per example or per batch; ``mask`` (e.g. ``(1, H, W)``) broadcasts over channels.
    """
    return (1.0 - mask) * v


class InpaintingCoupling(AbstractDataDependentCoupling):
    """In-painting coupling for channels-first images ``(C, H, W)``.

        xi ~ mask of tile x tile blocks, each kept (xi = 1) with probability keep_prob, per example,
        x0 = xi ∘ x1 + sigma (1 - xi) ∘ zeta,    cond = xi   (shape (1, H, W) per example, float),

    so the known pixels start at their data values and only the missing ones start from noise. A UNet with
    ``cond_channels=1`` takes the mask. The model keeps the known pixels fixed along the flow through
    :meth:`constrain` (:func:`masked_velocity`); ``model.solve_like(key, images)`` starts from
    ``xi ∘ x_known + sigma (1 - xi) ∘ zeta``.

    With ``with_image=True`` the condition is ``[xi, xi ∘ x1]`` (``1 + C`` channels): the uncoupled baseline
    (``coupled=False``, x0 from the base) needs the known pixels as a condition, since its x0 does not carry them.

    Args:
        tile: side of the square blocks the mask is made of (the last row/column of blocks is cropped when it does
            not divide H or W).
        keep_prob: probability that a block is known.
        sigma: noise scale on the missing pixels (1 in the paper).
        coupled: the data-dependent coupling (True) or the independent baseline with the same condition (False).
        with_image: append the masked image to the condition.

    References:
        Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent
        couplings", ICML 2024, Section 4.1.
    """

    tile: int = eqx.field(static=True)
    keep_prob: float = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    coupled: bool = eqx.field(static=True)
    with_image: bool = eqx.field(static=True)

    def __init__(
        self, tile: int = 2, keep_prob: float = 0.5, sigma: float = 1.0, coupled: bool = True, with_image: bool = False
    ):
        check_positive("tile", tile)
        if not 0.0 <= keep_prob <= 1.0:
            raise ValueError(f"InpaintingCoupling: keep_prob={keep_prob!r} must be in [0, 1]")
        self.tile, self.keep_prob, self.sigma = int(tile), float(keep_prob), float(sigma)
        self.coupled, self.with_image = bool(coupled), bool(with_image)

    def mask(self, key: PRNGKeyArray, x1: Float[Array, "n c h w"]) -> Float[Array, "n 1 h w"]:
        """A random tile mask per example: 1 on known pixels, 0 on missing ones."""
        check_images("InpaintingCoupling", x1, 0)
        n, _, h, w = x1.shape
        grid = (n, 1, -(-h // self.tile), -(-w // self.tile))
        keep = jax.random.bernoulli(key, self.keep_prob, grid).astype(x1.dtype)
        return tile_up(keep, self.tile)[:, :, :h, :w]

    def mean_and_condition(self, key, x1):
        xi = self.mask(key, x1)
        return xi * x1, jnp.concatenate([xi, xi * x1], axis=1) if self.with_image else xi

    def noise_scale(self, xi):
        return self.sigma * (1.0 - xi[:, :1])

    def constrain(self, v, cond):
        # Known pixels (mask 1) stay at their values along the whole path; the uncoupled baseline starts them from
        # noise, so it must move them.
        return v if cond is None or not self.coupled else masked_velocity(v, cond[:1])
