from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float

from genflow._checks import check_positive
from genflow.couplings._data_dependent import AbstractDataDependentCoupling, check_images, tile_up


def block_mean(x: Float[Array, "n c h w"], factor: int) -> Float[Array, "n c h/factor w/factor"]:
    """Average pooling over non-overlapping factor x factor blocks."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


class SuperResolutionCoupling(AbstractDataDependentCoupling):
    """Super-resolution coupling for channels-first images ``(C, H, W)``.

        xi = U(D(x1)),    x0 = xi + sigma zeta,    cond = xi   (same shape as x1),

    with D the average pooling over factor x factor blocks and U nearest-neighbour upsampling, so ``xi`` is the
    low-resolution image at full size. A UNet with ``cond_channels=C`` takes it. On 8x8 digits ``factor=2`` is
    4x4 -> 8x8. Every pixel moves along the flow.

    Args:
        factor: down-sampling factor; must divide H and W.
        sigma: noise scale added to the upsampled image.
        coupled: the data-dependent coupling (True) or the independent baseline with the same condition (False).

    References:
        Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent
        couplings", ICML 2024, Section 4.2.
    """

    factor: int = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    coupled: bool = eqx.field(static=True)

    def __init__(self, factor: int = 2, sigma: float = 0.1, coupled: bool = True):
        check_positive("factor", factor)
        self.factor, self.sigma, self.coupled = int(factor), float(sigma), bool(coupled)

    def low_resolution(self, x1: Float[Array, "n c h w"]) -> Float[Array, "n c h w"]:
        """``U(D(x1))``: the block means of x1, upsampled back to full size."""
        check_images("SuperResolutionCoupling", x1, self.factor)
        return tile_up(block_mean(x1, self.factor), self.factor)

    def mean_and_condition(self, key, x1):
        del key
        xi = self.low_resolution(x1)
        return xi, xi

    def noise_scale(self, xi):
        return self.sigma

    def constrain(self, v, cond):
        del cond
        return v
