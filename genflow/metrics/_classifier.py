"""A small convolutional image classifier whose penultimate layer is the feature space of FID and KID.

genflow trains one per dataset (``scripts/assets/train_image_classifier.py``: MNIST, Fashion-MNIST) and ships it as
``genflow/metrics/assets/<dataset>_classifier.eqx`` beside a JSON file with its architecture and test accuracy, so
every model is scored in the same features. Inception features (Heusel et al. 2017) are the standard on natural
images; a classifier trained on the data itself is the usual substitute on MNIST-like data, where Inception's
ImageNet features are a poor fit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from genflow._checks import as_shape, check_choice, check_positive_int
from genflow.data import AbstractFiniteDataset
from genflow.metrics._dequantize import pixels_to_unit_interval
from genflow.metrics._features import AbstractFeatureExtractor
from genflow.nn._conv import Conv2d

# Datasets with a shipped classifier: names of data, handed to the asset loader.
IMAGE_CLASSIFIER_DATASETS = ("mnist", "fashion_mnist")
TRAIN_SCRIPT = "scripts/assets/train_image_classifier.py"


class ImageClassifier(AbstractFeatureExtractor):
    r"""A small CNN for single images ``(C, H, W)`` in ``[-1, 1]`` (e.g. 28x28 grey MNIST digits).

    3x3 convolutions with GELU, the first at full resolution and each further one with stride 2 (28 -> 14 -> 7 with
    the default widths), then a linear layer to ``feature_dim`` tanh features (the penultimate layer, used by FID and
    KID) and a linear head to ``num_classes`` logits:

    $$\phi(x) = \tanh(W_f\, \mathrm{vec}(h_L(x)) + b_f), \qquad \mathrm{logits}(x) = W_o \phi(x) + b_o.$$

    Convolutions run channels-last inside (genflow/nn/_conv.py: XLA:CPU is 10-15x faster so inside loops).

    Args:
        image_shape: ``(C, H, W)`` of one image, the datasets' channels-first layout.
        widths: output channels of each convolution.
        feature_dim: size of the feature layer.
        num_classes: number of classes.
        key: initialisation key.

    References:
        LeCun, Bottou, Bengio, Haffner. "Gradient-based learning applied to document recognition". Proc. IEEE 1998.
    """

    convs: tuple[Conv2d, ...]
    feature: eqx.nn.Linear
    head: eqx.nn.Linear
    image_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        widths: Sequence[int] = (32, 64, 64),
        feature_dim: int = 128,
        num_classes: int = 10,
        *,
        key: PRNGKeyArray,
    ):
        self.image_shape = as_shape(image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape={image_shape!r} is invalid: need (C, H, W)")
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError(f"widths={widths!r} is invalid: need at least one convolution")
        for width in widths:
            check_positive_int("widths", width)
        check_positive_int("feature_dim", feature_dim)
        check_positive_int("num_classes", num_classes)
        keys = jax.random.split(key, len(widths) + 2)
        c, h, w = self.image_shape
        channels = (c, *widths)
        self.convs = tuple(
            Conv2d(channels[i], channels[i + 1], 3, stride=1 if i == 0 else 2, padding=1, key=keys[i])
            for i in range(len(widths))
        )
        # A stride-2, padding-1, 3x3 convolution maps a side s to ceil(s / 2).
        down = len(widths) - 1
        side = lambda s: s if down == 0 else math.ceil(s / 2**down)
        self.feature = eqx.nn.Linear(side(h) * side(w) * widths[-1], feature_dim, key=keys[-2])
        self.head = eqx.nn.Linear(feature_dim, num_classes, key=keys[-1])

    def features(self, x: Float[Array, "*shape"]) -> Float[Array, " feature_dim"]:
        """Penultimate-layer features of one image (any shape with ``C * H * W`` pixels, channels first)."""
        h = jnp.transpose(jnp.reshape(x, self.image_shape), (1, 2, 0))
        for conv in self.convs:
            h = jax.nn.gelu(conv(h))
        return jnp.tanh(self.feature(jnp.ravel(h)))

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, " num_classes"]:
        return self.head(self.features(x))


@eqx.filter_jit
def classifier_accuracy(
    classifier: Any, x: Float[Array, "n ..."], labels: Int[Array, " n"], batch_size: int | None = None
) -> Scalar:
    """Fraction of ``x`` that ``classifier`` (per-example logits) assigns to ``labels``, in chunks of ``batch_size``.

    8-bit images are scaled to ``[-1, 1]`` first. Jit-compiled (``batch_size`` is static).
    """
    x = pixels_to_unit_interval(x)
    logits = jax.lax.map(classifier, x, batch_size=batch_size) if batch_size else jax.vmap(classifier)(x)
    return jnp.mean(jnp.argmax(logits, axis=-1) == jnp.asarray(labels))


def train_classifier(
    classifier: eqx.Module,
    dataset: AbstractFiniteDataset,
    key: PRNGKeyArray,
    *,
    num_steps: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
) -> tuple[eqx.Module, Float[Array, " num_steps"]]:
    """Train a classifier by minibatch cross-entropy with AdamW, all steps in one jitted ``lax.scan``.

    Args:
        classifier: a module mapping one example to logits.
        dataset: a labelled finite dataset (``sample`` returns ``{"x": images, "cond": labels}``, as
            ``conditional=True`` datasets do); 8-bit images are scaled to ``[-1, 1]``.
        key: minibatch key.
        num_steps: optimizer steps.
        batch_size: examples per step (drawn with replacement).
        learning_rate: AdamW step size.
        weight_decay: AdamW weight decay.

    Returns:
        The trained classifier and the loss of every step.
    """
    check_positive_int("num_steps", num_steps)
    check_positive_int("batch_size", batch_size)
    if dataset.example_labels is None:
        raise ValueError(f"dataset={type(dataset).__name__} has no labels: build it with conditional=True")
    opt = optax.adamw(learning_rate, weight_decay=weight_decay)
    params, static = eqx.partition(classifier, eqx.is_inexact_array)

    def loss(params, k):
        batch = dataset.sample(k, batch_size)
        logits = jax.vmap(eqx.combine(params, static))(pixels_to_unit_interval(batch["x"]))
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["cond"]).mean()

    def step(carry, k):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss)(params, k)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    @jax.jit
    def run(params, keys):
        return jax.lax.scan(step, (params, opt.init(params)), keys)

    (params, _), losses = run(params, jax.random.split(key, num_steps))
    return eqx.combine(params, static), losses


# -- shipped assets ------------------------------------------------------------------------------------------------


def _asset_dir(directory: str | Path | None):
    return resources.files("genflow.metrics").joinpath("assets") if directory is None else Path(directory)


def save_image_classifier(
    classifier: ImageClassifier, name: str, architecture: dict, numbers: dict, directory: str | Path
) -> None:
    """Write ``<name>_classifier.eqx`` (``eqx.tree_serialise_leaves``, no pickle) and ``<name>_classifier.json``.

    ``architecture`` holds the keyword arguments of :class:`ImageClassifier` (the loader rebuilds the skeleton from
    them); ``numbers`` the training record (test accuracy, steps, ...). Both files are written to a temporary name
    and renamed, so a killed run leaves no half-written asset.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, write in (
        (".eqx", lambda p: eqx.tree_serialise_leaves(p, classifier)),
        (".json", lambda p: p.write_text(json.dumps({"architecture": architecture, **numbers}, indent=2))),
    ):
        final = directory / f"{name}_classifier{suffix}"
        tmp = final.with_name(final.name + ".tmp")
        write(tmp)
        tmp.replace(final)


def load_image_classifier(dataset: str = "mnist", directory: str | Path | None = None) -> ImageClassifier:
    """The classifier trained on ``dataset`` (``"mnist"`` or ``"fashion_mnist"``), from the shipped assets.

    Args:
        dataset: which classifier.
        directory: where ``<dataset>_classifier.eqx`` and ``.json`` lie (default: ``genflow/metrics/assets``).
    """
    check_choice("dataset", dataset, IMAGE_CLASSIFIER_DATASETS)
    folder = _asset_dir(directory)
    weights, record = folder.joinpath(f"{dataset}_classifier.eqx"), folder.joinpath(f"{dataset}_classifier.json")
    if not (weights.is_file() and record.is_file()):
        raise FileNotFoundError(
            f"no {dataset} classifier in {folder} (need {dataset}_classifier.eqx and .json); train it with "
            f"`python {TRAIN_SCRIPT} --dataset {dataset}`"
        )
    architecture = json.loads(record.read_text())["architecture"]
    skeleton = eqx.filter_eval_shape(lambda: ImageClassifier(**architecture, key=jax.random.key(0)))
    with weights.open("rb") as f:
        return eqx.tree_deserialise_leaves(f, skeleton)
