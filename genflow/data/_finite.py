"""Finite datasets held on the device; a minibatch is a random index drawn inside jit, then ``transform``ed."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from genflow.distributions import AbstractDistribution


class AbstractFiniteDataset(AbstractDistribution):
    """A finite set of examples held on the device: ``sample`` draws i.i.d. minibatches (with replacement) in jit.

    The stored examples may be raw (uint8 pixels); ``transform`` maps a drawn minibatch to the model's inputs inside
    the same jit (scaling, dequantisation, augmentation), so only the minibatch is ever converted. With labels,
    ``sample`` returns ``{"x": examples, "cond": labels}``; without, the examples alone.
    """

    @property
    @abc.abstractmethod
    def examples(self) -> Array:
        """All stored examples, shape ``(n, *event_shape)``, before ``transform``."""

    @property
    @abc.abstractmethod
    def example_labels(self) -> Int[Array, " n"] | None:
        """The labels that ``sample`` returns with the examples (None: examples only)."""

    @abc.abstractmethod
    def transform(self, key: PRNGKeyArray, x: Array) -> Float[Array, "num ..."]:
        """Map a minibatch of stored examples to the model's inputs (the identity for float data)."""

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.examples.shape[1:]

    @property
    def num_examples(self) -> int:
        return self.examples.shape[0]

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num ..."] | dict[str, Array]:
        """Draw ``num`` examples uniformly with replacement, then ``transform`` them (a dict with labels)."""
        # The index draw uses ``key`` itself, so float datasets keep the minibatch stream they had before
        # ``transform`` existed; the transform's key is folded off it.
        idx = jax.random.randint(key, (num,), 0, self.num_examples)
        x = self.transform(jax.random.fold_in(key, 1), self.examples[idx])
        labels = self.example_labels
        return x if labels is None else {"x": x, "cond": labels[idx]}


class ArrayDataset(AbstractFiniteDataset):
    """The empirical distribution of a finite array, optionally with integer labels.

    The data are array leaves of the module, so they live on the device and ``sample`` indexes them inside jit
    (i.i.d. draws with replacement). With labels, ``sample`` returns ``{"x": examples, "cond": labels}``.

    Args:
        array: examples, shape ``(n, *event_shape)``.
        labels: optional integer labels, shape ``(n,)``.

    References:
        None (a plain empirical distribution).
    """

    array: Float[Array, "n ..."]
    labels: Int[Array, " n"] | None

    def __init__(self, array: ArrayLike, labels: ArrayLike | None = None):
        self.array = jnp.asarray(array)
        if self.array.ndim < 1 or self.array.shape[0] == 0:
            raise ValueError(f"ArrayDataset: need a non-empty leading axis, got shape {self.array.shape}")
        self.labels = None if labels is None else jnp.asarray(labels, dtype=jnp.int32)
        if self.labels is not None and self.labels.shape != self.array.shape[:1]:
            expected, got = self.array.shape[:1], self.labels.shape
            raise ValueError(f"ArrayDataset: labels need shape {expected}, got {got}")

    @property
    def examples(self) -> Float[Array, "n ..."]:
        return self.array

    @property
    def example_labels(self) -> Int[Array, " n"] | None:
        return self.labels

    def transform(self, key: PRNGKeyArray, x: Float[Array, "num ..."]) -> Float[Array, "num ..."]:
        return x


_DIGITS_SPLITS = ("train", "test", "all")
# Fixed split of the 1797 images: the same permutation on every machine, 80% train.
_DIGITS_SEED = 0
_DIGITS_TRAIN_FRACTION = 0.8


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    # Imported lazily: scikit-learn is slow to import and only this dataset needs it.
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    if split == "all":
        return images, labels
    perm = np.random.default_rng(_DIGITS_SEED).permutation(images.shape[0])
    num_train = int(round(_DIGITS_TRAIN_FRACTION * images.shape[0]))
    idx = perm[:num_train] if split == "train" else perm[num_train:]
    return images[idx], labels[idx]


class Digits(AbstractFiniteDataset):
    """scikit-learn's bundled 8x8 handwritten digits (no download), scaled to ``[-1, 1]``.

    Pixels ``p`` in ``0..16`` map to ``p / 8 - 1``. Images have shape ``(1, 8, 8)`` (channels first) or
    ``(64,)`` with ``flatten=True``. They are an array leaf of the module, so minibatches are drawn inside jit
    by random indexing (with replacement). With ``conditional=True``, ``sample`` returns ``{"x": images,
    "cond": labels}`` with int32 labels in ``0..9``.

    Args:
        flatten: return ``(64,)`` vectors instead of ``(1, 8, 8)`` images.
        split: ``"train"`` (a fixed 80% of the 1797 images), ``"test"`` (the other 20%) or ``"all"``.
        conditional: also return the class labels.

    References:
        Alpaydin, Kaynak, "Optical recognition of handwritten digits", UCI Machine Learning Repository, 1998.
    """

    images: Float[Array, "n ..."]
    labels: Int[Array, " n"]
    flatten: bool = eqx.field(static=True)
    split: str = eqx.field(static=True)
    conditional: bool = eqx.field(static=True)
    num_classes: ClassVar[int] = 10

    def __init__(self, flatten: bool = False, split: str = "train", conditional: bool = False):
        if split not in _DIGITS_SPLITS:
            raise ValueError(f"Digits: unknown split {split!r}; allowed splits: {', '.join(_DIGITS_SPLITS)}")
        images, labels = _load_digits(split)
        shape = (64,) if flatten else (1, 8, 8)
        self.images = jnp.asarray(images.reshape(-1, *shape) / 8.0 - 1.0, dtype=jnp.float32)
        self.labels = jnp.asarray(labels, dtype=jnp.int32)
        self.flatten, self.split, self.conditional = bool(flatten), split, bool(conditional)

    @property
    def examples(self) -> Float[Array, "n ..."]:
        return self.images

    @property
    def example_labels(self) -> Int[Array, " n"] | None:
        return self.labels if self.conditional else None

    def transform(self, key: PRNGKeyArray, x: Float[Array, "num ..."]) -> Float[Array, "num ..."]:
        return x
