"""Which network a DSBM / IMF stage fits, as marker classes (the way diffrax marks solver capabilities).

DSBM holds a forward network (the drift from the source at t=0 to the target at t=1) and a backward one (the drift
of the time-reversed process). A stage fits the forward network on pairs simulated backwards from data, the backward
network on pairs simulated forwards from the source, or both at once. The loss tests the capabilities with
``isinstance(direction, AbstractFitsForward)`` and ``isinstance(direction, AbstractFitsBackward)``.

References:
    Shi, De Bortoli, Campbell, Doucet. "Diffusion Schrödinger Bridge Matching". NeurIPS 2023.
"""

from __future__ import annotations

import equinox as eqx


class AbstractDirection(eqx.Module):
    """Which of DSBM's two networks an IMF stage fits."""


class AbstractFitsForward(AbstractDirection):
    """Marker: the stage fits the forward network on ``(x0, x1)`` with ``x1 ~ data`` and ``x0`` simulated backwards."""


class AbstractFitsBackward(AbstractDirection):
    """Marker: the stage fits the backward network on ``(x0, x1)`` with ``x0 ~ base`` and ``x1`` simulated forwards."""


class Forward(AbstractFitsForward):
    """Fit the forward network only (an IMF forward stage)."""


class Backward(AbstractFitsBackward):
    """Fit the backward network only (an IMF backward stage)."""


class Both(AbstractFitsForward, AbstractFitsBackward):
    """Fit both networks at once, each on pairs from the other's current state (online DSBM: one ``Trainer.fit``)."""
