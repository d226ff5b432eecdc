"""Schrödinger bridges: the closed-form Gaussian bridge, LightSB, an EOT-benchmark-style generator, bridge matching.

Convention: the reference process is ``dX = sqrt(eps) dW`` on [0, 1]; t=0 is the source p0 and t=1 the target p1.
The static bridge is entropic OT with cost ``|x - y|^2 / 2`` and regulariser ``eps``; POT and torchcfm write it as
``reg = 2 eps`` (with cost ``|x - y|^2``), the Bunne/Janati papers as ``sigma^2 = eps``. Every function here takes
``eps`` in this convention and converts at library boundaries.
"""

from genflow.bridges._gaussian import GaussianBridge, monge_map_matrix

__all__ = ["GaussianBridge", "monge_map_matrix"]
