"""Schrödinger bridges: the closed-form Gaussian bridge, LightSB, an EOT-benchmark-style generator, bridge matching.

Convention: the reference process is ``dX = sqrt(eps) dW`` on [0, 1]; t=0 is the source p0 and t=1 the target p1.
The static bridge is entropic OT with cost ``|x - y|^2 / 2`` and regulariser ``eps``; POT and torchcfm write it as
``reg = 2 eps`` (with cost ``|x - y|^2``), the Bunne/Janati papers as ``sigma^2 = eps``. Every function here takes
``eps`` in this convention and converts at library boundaries.
"""

from genflow.bridges._benchmark import (
    BenchmarkPairs,
    BenchmarkTarget,
    EOTBenchmark,
    cbw_uvp,
    drift_error,
    eot_benchmark_data,
    eot_benchmark_source,
)
from genflow.bridges._directions import (
    AbstractDirection,
    AbstractFitsBackward,
    AbstractFitsForward,
    Backward,
    Both,
    Forward,
)
from genflow.bridges._gaussian import GaussianBridge, monge_map_matrix
from genflow.bridges._lightsb import AbstractLightSBObjective, LightSB, LightSBKL, LightSBMatching, PosteriorSetup
from genflow.bridges._matching import DSBM, BridgeMatching, entropic_coupling, fit_dsbm
from genflow.bridges._potential import MixturePotential
from genflow.bridges._samplers import AbstractBridgeSampler, ExactConditional, ExactPaths

__all__ = [
    "AbstractBridgeSampler",
    "AbstractDirection",
    "AbstractFitsBackward",
    "AbstractFitsForward",
    "AbstractLightSBObjective",
    "Backward",
    "BenchmarkPairs",
    "BenchmarkTarget",
    "Both",
    "BridgeMatching",
    "DSBM",
    "EOTBenchmark",
    "ExactConditional",
    "ExactPaths",
    "Forward",
    "GaussianBridge",
    "LightSB",
    "LightSBKL",
    "LightSBMatching",
    "MixturePotential",
    "PosteriorSetup",
    "cbw_uvp",
    "drift_error",
    "eot_benchmark_data",
    "entropic_coupling",
    "eot_benchmark_source",
    "fit_dsbm",
    "monge_map_matrix",
]
