"""Stochastic interpolants and flow matching (t=0 base, t=1 target)."""

from genflow.interpolants._flow_matching import FlowMatching
from genflow.interpolants._interpolants import AbstractInterpolant, LinearInterpolant

__all__ = ["AbstractInterpolant", "FlowMatching", "LinearInterpolant"]
