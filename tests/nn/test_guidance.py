"""Classifier-free guidance helpers: condition dropout and the guided field."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.nn import MLP, ConditionDropout, drop_condition, guided, null_condition


def test_null_condition_is_the_null_label_for_labels_and_zeros_otherwise():
    cond = {"label": jnp.array([1, 2, 3]), "vec": jnp.ones((3, 4))}
    null = null_condition(cond, null_label=10)
    np.testing.assert_array_equal(null["label"], [10, 10, 10])
    np.testing.assert_array_equal(null["vec"], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="null_label"):
        null_condition(jnp.array([1, 2]))


def test_drop_condition_drops_whole_examples_at_the_given_rate():
    n = 20_000
    cond = {"label": jnp.zeros(n, jnp.int32), "img": jnp.ones((n, 1, 2, 2))}
    out = drop_condition(jax.random.key(0), cond, 0.2, null_label=10)
    dropped = np.asarray(out["label"]) == 10
    # The same examples lose their label and their image condition.
    np.testing.assert_array_equal(np.asarray(out["img"]).reshape(n, -1).max(axis=1) == 0, dropped)
    assert abs(dropped.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n)
    assert drop_condition(jax.random.key(0), cond, 0.0) is cond


@pytest.mark.slow
def test_label_dropout_on_labels_and_vectors():
    labels = jnp.arange(10_000) % 10
    dropped = drop_condition(jax.random.key(0), labels, 0.2, null_label=10)
    frac = float(jnp.mean(dropped == 10))
    assert abs(frac - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 10_000)
    kept = np.asarray(dropped != 10)
    np.testing.assert_array_equal(np.asarray(dropped)[kept], np.asarray(labels)[kept])
    vectors = jnp.ones((1000, 3))
    out = drop_condition(jax.random.key(1), vectors, 0.5, None)
    rows = np.asarray(out).sum(1)
    assert set(np.unique(rows)) == {0.0, 3.0}
    with pytest.raises(ValueError, match="null_label"):
        drop_condition(jax.random.key(0), labels, 0.1, None)


def test_guided_field_interpolates_between_unconditional_and_conditional():
    field = lambda t, x, c=None: x * 0 + (-1.0 if c is None else c)
    c = jnp.array(3.0)
    x = jnp.zeros(2)
    np.testing.assert_allclose(guided(field, 0.0)(0.5, x, c), -1.0)
    np.testing.assert_allclose(guided(field, 1.0)(0.5, x, c), 3.0)
    np.testing.assert_allclose(guided(field, 2.5)(0.5, x, c), -1.0 + 2.5 * 4.0)
    np.testing.assert_allclose(guided(field, 2.5)(0.5, x, None), -1.0)
    # A traced weight (as DiffusionModel passes it, so new weights do not recompile) gives the same fields.
    traced = jax.jit(lambda w: guided(field, w)(0.5, x, c))
    np.testing.assert_allclose(traced(1.0), 3.0)
    np.testing.assert_allclose(traced(2.5), -1.0 + 2.5 * 4.0)


def test_null_label_in_a_batch_equals_the_cond_none_embedding():
    net = MLP(2, width=16, depth=2, num_classes=3, key=jax.random.key(0))
    x = jnp.array([0.3, -0.2])
    np.testing.assert_allclose(net(0.4, x, jnp.array(3)), net(0.4, x, None), atol=1e-6)


def test_condition_dropout_module_is_drop_condition_and_checks_its_rate():
    labels = jnp.arange(100) % 10
    dropout = ConditionDropout(0.2, null_label=10)
    key = jax.random.key(3)
    np.testing.assert_array_equal(dropout(key, labels), drop_condition(key, labels, 0.2, null_label=10))
    assert ConditionDropout()(key, labels) is labels
    with pytest.raises(ValueError, match=r"prob=1.0 is invalid: must lie in \[0, 1\)"):
        ConditionDropout(1.0)
