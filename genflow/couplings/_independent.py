from __future__ import annotations

from genflow.couplings._base import AbstractMarginalCoupling


class IndependentCoupling(AbstractMarginalCoupling):
    """The product coupling ``rho(x0, x1) = rho0(x0) rho1(x1)``: the inputs are returned unchanged.

    References:
        Albergo & Vanden-Eijnden, "Building Normalizing Flows with Stochastic Interpolants", ICLR 2023.
    """

    def __call__(self, key, x0, x1, cond=None):
        del key
        return x0, x1, cond
