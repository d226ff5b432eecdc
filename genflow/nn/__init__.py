"""Shared networks: time/condition embeddings, FiLM-conditioned MLPs, a small UNet and output heads.

Every network acts on one example, ``net(t, x, cond=None) -> array shaped like x`` (``PotentialHead`` returns
a scalar, ``MultiHead`` an array ``(num_heads, data_dim)``), with ``t`` a scalar of shape ``()``. Batch with
``jax.vmap(net, in_axes=(0, 0, 0))``, or ``in_axes=(0, 0, None)`` when ``cond`` is None. For classifier-free
guidance the null condition is ``cond=None`` (equivalently label ``num_classes``, or a zero vector).
"""

from genflow.nn._dae import AbstractDAEOutput, DenoiserOutput, TimeTabulatedDAE, VelocityOutput
from genflow.nn._embeddings import (
    AbstractTimeEmbedding,
    ConditionEmbedding,
    GaussianFourierEmbedding,
    SinusoidalEmbedding,
)
from genflow.nn._guidance import ConditionDropout, drop_condition, guided, null_condition
from genflow.nn._heads import MultiHead, PotentialHead
from genflow.nn._mlp import MLP, Activation, FiLM, ResMLP
from genflow.nn._multimarginal import SimplexConditionedNet, multimarginal_net
from genflow.nn._smd import LatentEncoder, MixtureDenoiser, mixture_denoiser
from genflow.nn._unet import UNet

__all__ = [
    "MLP",
    "AbstractDAEOutput",
    "AbstractTimeEmbedding",
    "Activation",
    "ConditionDropout",
    "ConditionEmbedding",
    "DenoiserOutput",
    "FiLM",
    "GaussianFourierEmbedding",
    "LatentEncoder",
    "MixtureDenoiser",
    "MultiHead",
    "PotentialHead",
    "ResMLP",
    "SimplexConditionedNet",
    "SinusoidalEmbedding",
    "TimeTabulatedDAE",
    "UNet",
    "VelocityOutput",
    "drop_condition",
    "guided",
    "mixture_denoiser",
    "multimarginal_net",
    "null_condition",
]
