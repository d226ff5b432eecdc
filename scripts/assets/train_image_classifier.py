"""Train the fixed image classifier whose features score FID and KID on MNIST or Fashion-MNIST.

    python scripts/assets/train_image_classifier.py --dataset mnist
    python scripts/assets/train_image_classifier.py --dataset fashion_mnist

Trains :class:`genflow.metrics.ImageClassifier` on the dataset's "train" split with a fixed seed, measures its
accuracy on the "test" split, and writes genflow/metrics/assets/<dataset>_classifier.eqx plus
<dataset>_classifier.json (architecture, test accuracy, training record). Run once per dataset (``make data`` first);
the assets are committed so every model is scored in the same features.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from genflow.data import AbstractFiniteDataset
from genflow.metrics import (
    IMAGE_CLASSIFIER_DATASETS,
    ImageClassifier,
    classifier_accuracy,
    save_image_classifier,
    train_classifier,
)

OUT = Path(__file__).resolve().parents[2] / "genflow" / "metrics" / "assets"
ARCHITECTURE = {"image_shape": [1, 28, 28], "widths": [32, 64, 64], "feature_dim": 128, "num_classes": 10}
STEPS, BATCH, LR, WEIGHT_DECAY, SEED, EVAL_BATCH = 3000, 128, 1e-3, 1e-4, 0, 500


def load_splits(dataset: str) -> tuple[AbstractFiniteDataset, AbstractFiniteDataset]:
    """The labelled train and test splits of ``dataset`` (imported here: only this script needs the loaders)."""
    from genflow.data import MNIST, FashionMNIST

    cls = {"mnist": MNIST, "fashion_mnist": FashionMNIST}[dataset]
    return cls(split="train", conditional=True), cls(split="test", conditional=True)


def run(
    name: str,
    train_set: AbstractFiniteDataset,
    test_set: AbstractFiniteDataset,
    out: Path = OUT,
    architecture: dict = ARCHITECTURE,
    steps: int = STEPS,
    batch_size: int = BATCH,
) -> dict:
    """Train on ``train_set``, score ``test_set``, and write the ``name`` asset to ``out``; return the record."""
    key = jax.random.key(SEED)
    model = ImageClassifier(**architecture, key=jax.random.fold_in(key, 0))
    start = time.perf_counter()
    model, losses = train_classifier(
        model, train_set, jax.random.fold_in(key, 1), num_steps=steps, batch_size=batch_size,
        learning_rate=LR, weight_decay=WEIGHT_DECAY,
    )  # fmt: skip
    accuracy = lambda d: float(classifier_accuracy(model, d.examples, d.example_labels, batch_size=EVAL_BATCH))
    numbers = {
        "dataset": name,
        "steps": steps,
        "batch": batch_size,
        "learning_rate": LR,
        "weight_decay": WEIGHT_DECAY,
        "seed": SEED,
        "final_loss": float(losses[-100:].mean()),
        "train_accuracy": accuracy(train_set),
        "test_accuracy": accuracy(test_set),
        "num_test": int(test_set.num_examples),
        "seconds": round(time.perf_counter() - start, 1),
    }
    save_image_classifier(model, name, architecture, numbers, out)
    return numbers


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=IMAGE_CLASSIFIER_DATASETS, required=True)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    numbers = run(args.dataset, *load_splits(args.dataset), out=args.out, steps=args.steps)
    print(json.dumps(numbers))
    return numbers


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
