"""Hyperparameters as state and the metrics channel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TraceCounter

import jopt


def _quadratic_grads(params):
    # f(w) = 0.5 * sum(a * w^2), a fixed and positive: the gradient is a * w.
    a = jnp.arange(1.0, 1.0 + params["w"].size, dtype=jnp.float32).reshape(params["w"].shape)
    return {"w": a * params["w"], "b": params["b"]}


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32), "b": jnp.ones(2, jnp.float32)}


def test_names_are_readable_and_defaults_included():
    tx = jopt.with_hparams(jopt.adam)(1e-3, b1=0.8)
    hp = jopt.get_hparams(tx.init(_params()))
    assert {"adam/learning_rate", "adam/b1", "adam/b2", "adam/eps"} <= set(hp)
    assert float(hp["adam/b1"]) == pytest.approx(0.8)
    assert all(v.dtype == jnp.float32 and v.shape == () for v in hp.values())


def test_same_results_as_the_plain_optimizer():
    params = _params()
    plain, wrapped = jopt.adam(0.05, b1=0.8), jopt.with_hparams(jopt.adam)(0.05, b1=0.8)
    s1, s2 = plain.init(params), wrapped.init(params)
    p1 = p2 = params
    for _ in range(3):
        u1, s1 = plain.update(_quadratic_grads(p1), s1, p1)
        u2, s2 = wrapped.update(_quadratic_grads(p2), s2, p2)
        p1, p2 = jopt.apply_updates(p1, u1), jopt.apply_updates(p2, u2)
    # Not bitwise: the plain optimizer forms 1 - b1 in float64 from the Python float, the
    # wrapped one in float32 from the stored scalar (optax.inject_hyperparams does the same).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6), p1, p2)


def test_duplicate_names_get_a_suffix_and_set_targets_one():
    tx = jopt.chain(jopt.with_hparams(jopt.sgd)(0.1), jopt.with_hparams(jopt.sgd)(0.2))
    state = jopt.set_hparams(tx.init(_params()), **{"sgd_2/learning_rate": 0.5})
    hp = jopt.get_hparams(state)
    assert float(hp["sgd/learning_rate"]) == pytest.approx(0.1)
    assert float(hp["sgd_2/learning_rate"]) == pytest.approx(0.5)


def test_unknown_name_lists_valid_names():
    state = jopt.with_hparams(jopt.sgd, name="opt")(0.1).init(_params())
    with pytest.raises(jopt.JoptError, match="valid names: opt/learning_rate") as e:
        jopt.set_hparams(state, **{"opt/lr": 0.5})
    assert "\n" not in str(e.value)


def test_bad_values_and_names_raise():
    state = jopt.with_hparams(jopt.sgd)(0.1).init(_params())
    with pytest.raises(jopt.JoptError, match="must be a scalar"):
        jopt.set_hparams(state, **{"sgd/learning_rate": jnp.ones(3)})
    with pytest.raises(jopt.JoptError, match="name must be"):
        jopt.with_hparams(jopt.sgd, name="a/b")
    with pytest.raises(jopt.JoptError, match="sgd"):
        jopt.with_hparams(jopt.sgd)(0.1, nonsense=3)
    sched = jopt.with_hparams(jopt.sgd)(lambda c: 0.1 / (1.0 + c.astype(jnp.float32)))
    with pytest.raises(jopt.JoptError, match="follows a schedule"):
        jopt.set_hparams(sched.init(_params()), **{"sgd/learning_rate": 0.5})


def test_plain_state_gives_empty_dicts():
    state = jopt.adam(1e-3).init(_params())
    assert jopt.get_hparams(state) == {}
    assert jopt.metrics(state) == {}
    assert jopt.set_hparams(state) is state


def test_schedule_updates_the_value_each_step():
    tx = jopt.with_hparams(jopt.sgd)(lambda c: 1.0 / (1.0 + c.astype(jnp.float32)))
    params = _params()
    state = tx.init(params)
    seen = []
    for _ in range(3):
        updates, state = tx.update(_quadratic_grads(params), state, params)
        seen.append(float(jopt.get_hparams(state)["sgd/learning_rate"]))
        # The update used exactly the reported rate.
        np.testing.assert_allclose(updates["b"], -seen[-1] * params["b"], rtol=1e-6)
    np.testing.assert_allclose(seen, [1.0, 0.5, 1.0 / 3.0], rtol=1e-6)


def test_set_hparams_in_jitted_loop_traces_once():
    tx = jopt.with_hparams(jopt.adam)(1e-2)
    params = _params()

    def step(params, state, lr):
        state = jopt.set_hparams(state, **{"adam/learning_rate": lr})
        updates, state = tx.update(_quadratic_grads(params), state, params)
        return jopt.apply_updates(params, updates), state

    counter = TraceCounter(step)
    jstep = jax.jit(counter)
    state = tx.init(params)
    for lr in [1e-2, 5e-3, 2e-3, 1e-3]:
        # The caller canonicalizes the scalar: a Python float and an array are distinct keys.
        params, state = jstep(params, state, jnp.asarray(lr, jnp.float32))
    assert counter.count == 1
    assert float(jopt.get_hparams(state)["adam/learning_rate"]) == pytest.approx(1e-3)


def test_vmap_over_eight_learning_rates_equals_separate_runs():
    tx = jopt.with_hparams(jopt.sgd)(0.1, momentum=0.9)
    params0 = _params()
    state0 = tx.init(params0)

    def run(lr):
        state = jopt.set_hparams(state0, **{"sgd/learning_rate": lr})

        def body(carry, _):
            p, s = carry
            u, s = tx.update(_quadratic_grads(p), s, p)
            return (jopt.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(body, (params0, state), None, length=5)
        return p

    lrs = jnp.linspace(0.01, 0.2, 8, dtype=jnp.float32)
    batched = jax.jit(jax.vmap(run))(lrs)
    single = jax.jit(run)
    for i in range(8):
        one = single(lrs[i])
        jax.tree.map(lambda b, o, i=i: np.testing.assert_allclose(b[i], o, rtol=1e-6), batched, one)


def test_monitor_and_tap_metrics():
    clip = jopt.clip_by_global_norm(1.0) if hasattr(jopt, "clip_by_global_norm") else None
    if clip is None:
        import optax

        clip = optax.clip_by_global_norm(1.0)
    inner = jopt.chain(jopt.tap("raw"), clip, jopt.tap("clipped"), jopt.sgd(0.1))
    tx = jopt.with_norms(jopt.with_hparams(lambda learning_rate: inner, name="clipsgd")(0.1))
    params = {"w": jnp.full((4,), 2.0, jnp.float32)}
    grads = {"w": jnp.full((4,), 3.0, jnp.float32)}
    _, state = jax.jit(tx.update)(grads, tx.init(params), params)
    m = jopt.metrics(state)
    np.testing.assert_allclose(m["raw"], 6.0, rtol=1e-6)
    np.testing.assert_allclose(m["grad_norm"], 6.0, rtol=1e-6)
    np.testing.assert_allclose(m["clipped"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["update_norm"], 0.1, rtol=1e-5)
    np.testing.assert_allclose(m["param_norm"], 4.0, rtol=1e-6)
    np.testing.assert_allclose(m["update_ratio"], 0.025, rtol=1e-5)
    assert "clipsgd/learning_rate" in m
    assert all(jnp.shape(v) == () for v in m.values())
    assert set(jax.jit(jopt.metrics)(state)) == set(m)


def test_clipping_norm_and_default_names():
    def clipped_sgd(max_norm, learning_rate):
        return jopt.chain(jopt.clip_by_global_norm(max_norm), jopt.sgd(learning_rate))

    tx = jopt.with_hparams(clipped_sgd)(1.0, 0.1)
    params = {"w": jnp.full((4,), 10.0, jnp.float32)}
    state = jopt.set_hparams(tx.init(params), **{"clipped_sgd/max_norm": 2.0})
    updates, _ = jax.jit(tx.update)(params, state, params)
    np.testing.assert_allclose(jopt.global_norm(updates), 0.2, rtol=1e-6)
    lam = jopt.with_hparams(lambda learning_rate: jopt.sgd(learning_rate))(0.1)
    assert list(jopt.get_hparams(lam.init(params))) == ["opt/learning_rate"]


def test_strong_stored_values_stay_strong():
    # A state restored from a checkpoint holds strong float32 scalars; set/schedule keep them.
    tx = jopt.with_hparams(jopt.sgd)(lambda c: 0.1 + 0.0 * c.astype(jnp.float32), momentum=0.9)
    params = _params()
    state = jax.tree.map(lambda x: jnp.array(np.asarray(x)), tx.init(params))
    state = jopt.set_hparams(state, **{"sgd/momentum": 0.5})
    _, state = tx.update(_quadratic_grads(params), state, params)
    assert not any(v.weak_type for v in jopt.get_hparams(state).values())
