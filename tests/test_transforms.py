"""Building blocks: interop with optax both ways, parity of the blocks the optimizer tests do
not cover, edge cases (zeros), and user errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt


def _tree(key, scale=1.0):
    k1, k2 = jax.random.split(key)
    return {
        "a": scale * jax.random.normal(k1, (4,)),
        "b": {"c": scale * jax.random.normal(k2, (2, 3))},
    }


def _run(tx, params, grads_seq, standard=False, **extra):
    """Apply ``tx`` over the gradient sequence (one jitted call); final params and updates."""

    def run(params, grads_seq):
        state = tx.init(params)
        out = []
        for g in grads_seq:
            u, state = tx.update(g, state, params, **extra)
            params = optax.apply_updates(params, u)
            out.append(u)
        return params, out

    if standard:
        # optax is not written for strict dtype promotion (it mixes Python floats and int32
        # counts), so anything that runs optax code uses the standard rules.
        with jax.numpy_dtype_promotion("standard"):
            return jax.jit(run)(params, grads_seq)
    return jax.jit(run)(params, grads_seq)


def _close(a, b, rtol=1e-6, atol=1e-7):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.fixture(scope="module")
def data():
    key = jax.random.key(7)
    print("transforms PRNG key: jax.random.key(7)")
    kp, *kg = jax.random.split(key, 4)
    return _tree(kp), [_tree(k, 3.0) for k in kg]


def test_jopt_transform_inside_optax_chain(data):
    params, grads = data
    mixed = optax.chain(
        optax.clip_by_global_norm(2.0), jopt.scale_by_adam(b1=0.8), optax.scale(-0.1)
    )
    pure = optax.chain(
        optax.clip_by_global_norm(2.0), optax.scale_by_adam(b1=0.8), optax.scale(-0.1)
    )
    _close(_run(mixed, params, grads, True)[0], _run(pure, params, grads, True)[0])


def test_optax_transform_inside_jopt_chain(data):
    params, grads = data
    mixed = jopt.chain(jopt.clip_by_global_norm(2.0), optax.scale_by_adam(b1=0.8), jopt.scale(-0.1))
    pure = optax.chain(
        optax.clip_by_global_norm(2.0), optax.scale_by_adam(b1=0.8), optax.scale(-0.1)
    )
    _close(_run(mixed, params, grads, True)[0], _run(pure, params, grads, True)[0])


def _scale_by_value():
    """A transform that reads the extra argument ``value`` (u <- value * u)."""

    def update_fn(updates, state, params=None, **extra):
        del params
        return jax.tree.map(lambda u: extra["value"] * u, updates), state

    return jopt.GradientTransformation(lambda p: jopt.EmptyState(), update_fn)


def test_extra_args_are_forwarded_both_ways(data):
    params, grads = data
    plain = optax.scale(-1.0)  # a plain optax transform: must not receive the extra argument
    for tx in (
        optax.chain(plain, _scale_by_value()),
        jopt.chain(plain, _scale_by_value()),
        jopt.named_chain(("plain", plain), ("by_value", _scale_by_value())),
    ):
        u, _ = tx.update(grads[0], tx.init(params), params, value=3.0, unused=1)
        _close(u, jax.tree.map(lambda g: -3.0 * g, grads[0]))


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: jopt.scale_by_sign(), lambda: optax.scale_by_sign()),
        (lambda: jopt.clip(0.5), lambda: optax.clip(0.5)),
        (lambda: jopt.clip_by_global_norm(1.0), lambda: optax.clip_by_global_norm(1.0)),
        (lambda: jopt.clip_by_global_norm(100.0), lambda: optax.clip_by_global_norm(100.0)),
        (lambda: jopt.trace(0.9, nesterov=True), lambda: optax.trace(0.9, nesterov=True)),
        (
            lambda: jopt.scale_by_trust_ratio(0.1, 0.5, 1e-3),
            lambda: optax.scale_by_trust_ratio(0.1, 0.5, 1e-3),
        ),
        (
            lambda: jopt.scale_by_lion(mode="smooth", smooth_beta=2.0),
            lambda: optax.scale_by_lion(mode="smooth", smooth_beta=2.0),
        ),
        (
            lambda: jopt.add_decayed_weights(
                optax.linear_schedule(0.1, 0.0, 3), {"a": False, "b": True}
            ),
            lambda: optax.add_decayed_weights(
                optax.linear_schedule(0.1, 0.0, 3), {"a": False, "b": True}
            ),
        ),
        (
            lambda: jopt.add_noise(0.01, 0.55, jax.random.key(3)),
            lambda: optax.add_noise(0.01, 0.55, jax.random.key(3)),
        ),
    ],
    ids=[
        "sign",
        "clip",
        "clip_norm_active",
        "clip_norm_inactive",
        "trace",
        "trust_ratio",
        "lion_smooth",
        "decayed_weights_mask_schedule",
        "add_noise",
    ],
)
def test_block_matches_optax(data, ours, theirs):
    params, grads = data
    _, u_ours = _run(ours(), params, grads)
    _, u_theirs = _run(theirs(), params, grads, standard=True)
    _close(u_ours, u_theirs)


def test_add_noise_is_a_pure_function_of_its_key(data):
    params, grads = data

    @jax.jit
    def noise(key):
        tx = jopt.add_noise(0.1, 0.55, key)
        state, us = tx.init(params), []
        for g in grads:
            u, state = tx.update(g, state)
            us.append(u)
        return us

    a, b, c = noise(jax.random.key(0)), noise(jax.random.key(0)), noise(jax.random.key(1))
    _close(a, b, rtol=0, atol=0)
    assert not np.allclose(a[0]["a"], c[0]["a"])


def test_add_noise_variance_anneals():
    # 20k samples per step: the empirical variance is eta / t^gamma within 5 %.
    g = {"x": jnp.zeros(20_000)}
    tx = jopt.add_noise(0.5, 0.55, jax.random.key(11))
    state = tx.init(g)
    for t in range(1, 4):
        u, state = tx.update(g, state)
        assert float(jnp.var(u["x"])) == pytest.approx(0.5 / t**0.55, rel=0.05)


def test_clip_by_global_norm_zero_gradient_gives_zeros():
    @jax.jit
    def clip(g, max_norm):  # max_norm traced: one compile per tree structure
        return jopt.clip_by_global_norm(max_norm).update(g, jopt.EmptyState())[0]

    zeros = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2), jnp.bfloat16)}
    for max_norm in (1.0, 0.0):
        u = clip(zeros, jnp.asarray(max_norm, jnp.float32))
        for x in jax.tree.leaves(u):
            assert bool(jnp.all(x == 0)) and bool(jnp.all(jnp.isfinite(x)))
    # And a larger gradient is clipped to exactly the allowed norm.
    u = clip({"a": jnp.array([3.0, 4.0]), "b": jnp.ones((2, 2), jnp.bfloat16)}, jnp.float32(1.0))
    assert float(jopt.global_norm(u)) == pytest.approx(1.0, rel=1e-2)  # bf16 leaf: ~3 digits
    assert u["b"].dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "make",
    [
        lambda: jopt.scale_by_adam(),
        lambda: jopt.scale_by_adam(amsgrad=True),
        lambda: jopt.scale_by_adam(nesterov=True),
        lambda: jopt.scale_by_rms(),
        lambda: jopt.scale_by_rms(eps_in_sqrt=False, centered=True, bias_correction=True),
        lambda: jopt.scale_by_rss(initial_accumulator_value=0.0),
        lambda: jopt.scale_by_adadelta(),
        lambda: jopt.scale_by_adamax(),
        lambda: jopt.scale_by_radam(),
        lambda: jopt.scale_by_lion(),
        lambda: jopt.scale_by_trust_ratio(),
        lambda: jopt.scale_by_sign(),
    ],
    ids=[
        "adam",
        "amsgrad",
        "nadam",
        "rms",
        "rms_centered",
        "rss_zero_init",
        "adadelta",
        "adamax",
        "radam",
        "lion",
        "trust_ratio",
        "sign",
    ],
)
def test_zero_gradients_and_zero_params_give_zero_finite_updates(make):
    zeros = {"w": jnp.zeros(3), "m": jnp.zeros((2, 2))}
    tx = make()

    @jax.jit
    def three_steps(params):
        state, us = tx.init(params), []
        for _ in range(3):
            u, state = tx.update(params, state, params)
            us.append(u)
        return us, state

    us, state = three_steps(zeros)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((us, state)))
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(us))


def test_amsgrad_keeps_the_max_of_the_bias_corrected_second_moment():
    # One large gradient then small ones: nu_max must stay at the bias-corrected first value.
    p = {"x": jnp.zeros(())}
    tx = jopt.scale_by_adam(b2=0.9, amsgrad=True)
    state = tx.init(p)
    _, state = tx.update({"x": jnp.array(10.0)}, state)
    assert float(state.nu_max["x"]) == pytest.approx(100.0, rel=1e-6)  # 0.1*100 / (1-0.9)
    for _ in range(3):
        _, state = tx.update({"x": jnp.array(0.1)}, state)
    assert float(state.nu_max["x"]) == pytest.approx(100.0, rel=1e-6)


def test_hyperparameters_may_be_traced_arrays():
    # Issue 3 builds optimizers inside update with jax arrays for numeric hyperparameters.
    lp = {"x": jnp.ones((3,), jnp.bfloat16)}

    @jax.jit
    def run(b1, lr, wd):
        outs = []
        for tx in (
            jopt.adamw(lr, b1=b1, weight_decay=wd),
            jopt.rmsprop(lr, decay=b1, momentum=b1, centered=True),
            jopt.radam(lr, b1=b1, b2=b1 + 0.09),
            jopt.lion(lr, b1=b1, weight_decay=wd),
            jopt.lamb(lr, b1=b1, weight_decay=wd),
            jopt.sgd(lr, momentum=b1),
            jopt.adadelta(lr, rho=b1, weight_decay=wd),
            jopt.chain(jopt.clip(b1), jopt.clip_by_global_norm(b1), jopt.add_l2(wd)),
        ):
            u, _ = tx.update(jax.tree.map(jnp.ones_like, lp), tx.init(lp), lp)
            outs.append(u)
        return outs

    f32 = jnp.float32
    outs = run(jnp.asarray(0.9, f32), jnp.asarray(1e-2, f32), jnp.asarray(0.1, f32))
    assert all(
        x.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(outs)
    )
    # Same numbers as with Python floats.
    u_py, _ = jopt.adamw(1e-2, b1=0.9, weight_decay=0.1).update(
        jax.tree.map(jnp.ones_like, lp), jopt.adamw(1e-2).init(lp), lp
    )
    _close(outs[0], u_py, rtol=1e-2)


def test_user_errors_raise_jopt_error():
    with pytest.raises(jopt.JoptError, match="explicit PRNG key"):
        jopt.add_noise(0.1, 0.55)
    with pytest.raises(jopt.JoptError, match="unknown mode"):
        jopt.scale_by_lion(mode="soft")
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    tx = jopt.add_decayed_weights(0.1, mask={"a": True, "c": False})
    with pytest.raises(jopt.JoptError, match="mask must be a tree of booleans"):
        tx.update(params, tx.init(params), params)
