"""Train the fixed digits classifier whose features score sample quality (genflow.metrics.digits_feature_mmd).

    python scripts/assets/train_digits_classifier.py

Trains on the Digits "train" split (80%) with a fixed seed, reports accuracy on the "test" split, and writes
genflow/metrics/assets/digits_classifier.eqx plus digits_classifier.json (the numbers). Run once; the asset is
committed so every model is scored with the same features.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import equinox as eqx
import jax
import optax

from genflow.data import Digits
from genflow.metrics._digits import ASSET, DigitsClassifier, digits_accuracy

OUT = Path(__file__).resolve().parents[2] / "genflow" / "metrics" / "assets"
STEPS, BATCH, LR, NOISE, WEIGHT_DECAY, SEED = 4000, 128, 1e-3, 0.0, 1e-4, 0


def train() -> tuple[DigitsClassifier, dict]:
    train_set, test_set = Digits(flatten=True, split="train"), Digits(flatten=True, split="test")
    key = jax.random.key(SEED)
    model = DigitsClassifier(key=jax.random.fold_in(key, 0))
    opt = optax.adamw(LR, weight_decay=WEIGHT_DECAY)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(params)

    def loss(params, key):
        k_idx, k_noise = jax.random.split(key)
        idx = jax.random.randint(k_idx, (BATCH,), 0, train_set.num_examples)
        # Noise augmentation: generated digits are slightly noisy, and their features should not jump for it.
        x = train_set.images[idx] + NOISE * jax.random.normal(k_noise, (BATCH, 64))
        logits = jax.vmap(eqx.combine(params, static))(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, train_set.labels[idx]).mean()

    def step(carry, key):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    start = time.perf_counter()
    keys = jax.random.split(jax.random.fold_in(key, 1), STEPS)
    (params, _), losses = jax.jit(lambda c, k: jax.lax.scan(step, c, k))((params, opt_state), keys)
    model = eqx.combine(params, static)
    numbers = {
        "steps": STEPS,
        "batch": BATCH,
        "noise": NOISE,
        "final_loss": float(losses[-100:].mean()),
        "train_accuracy": float(digits_accuracy(train_set.images, train_set.labels, model)),
        "test_accuracy": float(digits_accuracy(test_set.images, test_set.labels, model)),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return model, numbers


def main() -> dict:
    model, numbers = train()
    OUT.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(OUT / ASSET, model)
    (OUT / "digits_classifier.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers))
    return numbers


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
