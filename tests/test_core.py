"""The protocol layer: chain, named_chain, apply_updates and the tree helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.core import map_elementwise, safe_increment, scalar_as, state_dtype


def test_chain_state_is_a_tuple_like_optax_chain():
    params = {"w": jnp.ones(3)}
    ours = jopt.chain(jopt.trace(0.9), jopt.scale(-0.1)).init(params)
    theirs = optax.chain(optax.trace(0.9), optax.scale(-0.1)).init(params)
    assert jax.tree.structure(ours).num_leaves == jax.tree.structure(theirs).num_leaves
    assert isinstance(ours, tuple) and len(ours) == 2


def test_named_chain_addresses_state_by_name_and_rejects_bad_names():
    params = {"w": jnp.ones(3)}
    tx = jopt.named_chain(("momentum", jopt.trace(0.5)), ("lr", jopt.scale(-1.0)))
    state = tx.init(params)
    u, state = tx.update({"w": jnp.full(3, 2.0)}, state, params)
    np.testing.assert_array_equal(state["momentum"].trace["w"], jnp.full(3, 2.0))
    np.testing.assert_array_equal(u["w"], jnp.full(3, -2.0))
    with pytest.raises(jopt.JoptError, match="duplicate names"):
        jopt.named_chain(("a", jopt.identity()), ("a", jopt.identity()))
    with pytest.raises(jopt.JoptError, match="non-empty strings"):
        jopt.named_chain(("", jopt.identity()))
    with pytest.raises(jopt.JoptError, match="gradient transformation"):
        jopt.chain(lambda g: g)


def test_apply_updates_keeps_each_parameter_dtype():
    params = {"h": jnp.ones(2, jnp.bfloat16), "f": jnp.ones(2, jnp.float32)}
    updates = {"h": jnp.full(2, 1e-3, jnp.float32), "f": jnp.full(2, 1e-3, jnp.bfloat16)}
    out = jopt.apply_updates(params, updates)
    assert out["h"].dtype == jnp.bfloat16 and out["f"].dtype == jnp.float32
    # The float32 sum is rounded once to bfloat16 (1 + 1e-3 rounds to 1 in bfloat16).
    np.testing.assert_array_equal(out["h"], jnp.ones(2, jnp.bfloat16))
    np.testing.assert_allclose(out["f"], 1.001, rtol=1e-3)


def test_map_elementwise_returns_a_tuple_of_trees():
    tree = {"a": jnp.arange(3.0), "b": (jnp.ones(2),)}
    doubled, squared = map_elementwise(lambda x: (2 * x, x * x), tree, n_out=2)
    assert jax.tree.structure(doubled) == jax.tree.structure(tree)
    np.testing.assert_array_equal(squared["a"], jnp.array([0.0, 1.0, 4.0]))
    np.testing.assert_array_equal(doubled["b"][0], jnp.full(2, 2.0))


def test_helpers():
    top = jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32)
    assert int(safe_increment(top)) == int(top)
    assert int(safe_increment(jnp.zeros([], jnp.int32))) == 1
    assert state_dtype(jnp.ones(1, jnp.bfloat16)) == jnp.float32
    assert state_dtype(jnp.ones(1, jnp.float32), jnp.bfloat16) == jnp.bfloat16
    assert scalar_as(jnp.asarray(0.5, jnp.float32), jnp.ones(1, jnp.bfloat16)).dtype == jnp.bfloat16
    # scale_by_learning_rate(None) is the identity, as in optax (adadelta's default).
    g = {"w": jnp.ones(2)}
    u, _ = jopt.scale_by_learning_rate(None).update(g, jopt.EmptyState())
    np.testing.assert_array_equal(u["w"], g["w"])
