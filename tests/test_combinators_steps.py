"""Accumulation, the non-finite guard, EMA, lookahead, precision, and the contract checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import TraceCounter

import jopt

# A least-squares problem: loss(w) = mean((x @ w - y)^2), gradients by autodiff.
_X = jax.random.normal(jax.random.key(1), (16, 3))
_Y = jax.random.normal(jax.random.key(2), (16,))
_P0 = {"w": jnp.array([0.3, -0.2, 0.1]), "b": jnp.zeros(())}


def _loss(params, x, y):
    return jnp.mean(jnp.square(x @ params["w"] + params["b"] - y))


_grad = jax.jit(jax.grad(_loss))


def _run(tx, grads_fn, steps, params=_P0):
    @jax.jit
    def step(p, s, i):
        u, s = tx.update(grads_fn(p, i), s, p)
        return jopt.apply_updates(p, u), s

    state = tx.init(params)
    for i in range(steps):
        params, state = step(params, state, jnp.asarray(i, jnp.int32))
    return params, state


@pytest.mark.parametrize("make", [lambda: jopt.sgd(0.1, momentum=0.9), lambda: jopt.adam(0.05)])
def test_accumulation_equals_full_batch(make):
    k = 4
    full, _ = _run(make(), lambda p, i: _grad(p, _X, _Y), 3)

    def micro(p, i):
        j = i % k
        xs, ys = _X.reshape(k, 4, 3), _Y.reshape(k, 4)
        return _grad(p, xs[j], ys[j])

    tx = jopt.accumulate(make(), k)
    acc, state = _run(tx, micro, 3 * k)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), acc, full)
    m = jopt.metrics(state)
    assert bool(m["accumulate/applied"]) and int(m["accumulate/micro_step"]) == 0


def test_accumulation_sum_mode_and_step_flags():
    tx = jopt.accumulate(jopt.sgd(1.0), 3, mode="sum")
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    flags = []
    for i in range(3):
        updates, state = tx.update({"w": jnp.full(2, float(i + 1))}, state, params)
        flags.append(bool(jopt.metrics(state)["accumulate/applied"]))
        if i < 2:
            assert np.all(updates["w"] == 0) and np.all(np.signbit(updates["w"]))
    assert flags == [False, False, True]
    np.testing.assert_array_equal(updates["w"], [-6.0, -6.0])
    with pytest.raises(jopt.JoptError, match="k must be"):
        jopt.accumulate(jopt.sgd(1.0), 0)
    with pytest.raises(jopt.JoptError, match="mode"):
        jopt.accumulate(jopt.sgd(1.0), 2, mode="avg")


def _grads_with_nan_at(bad):
    def fn(p, i):
        g = _grad(p, _X, _Y)
        poison = jnp.where(jnp.isin(i, jnp.asarray(bad, jnp.int32)), jnp.nan, 0.0)
        return {"w": g["w"] + poison, "b": g["b"]}

    return fn


def test_nan_step_is_skipped_and_training_continues_identically():
    tx = jopt.skip_nonfinite(jopt.adam(0.05))
    guarded, state = _run(tx, _grads_with_nan_at([5]), 10)
    m = jopt.metrics(state)
    assert int(m["skip/total"]) == 1 and int(m["skip/consecutive"]) == 0
    assert not bool(m["skip/skipped"])
    # The same run without that step: 9 clean steps.
    clean, _ = _run(jopt.adam(0.05), lambda p, i: _grad(p, _X, _Y), 9)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=0), guarded, clean)


def test_skipped_step_leaves_params_and_state_unchanged():
    tx = jopt.skip_nonfinite(jopt.adam(0.05), max_consecutive=2)
    p1, s1 = _run(tx, _grads_with_nan_at([]), 3)
    bad = {"w": jnp.array([jnp.inf, 0.0, 0.0]), "b": jnp.zeros(())}
    u, s2 = jax.jit(tx.update)(bad, s1, p1)
    p2 = jopt.apply_updates(p1, u)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), p2, p1)
    jax.tree.map(np.testing.assert_array_equal, s2.inner_state, s1.inner_state)
    assert int(s2.consecutive) == 1 and bool(s2.skipped)
    jopt.check_state(s2)


@pytest.mark.parametrize("with_grad_arg", [False, True])
def test_frozen_gradients_never_skip_a_step(with_grad_arg):
    """Only gradients the optimizer reads decide a skip: a NaN in a frozen leaf's gradient
    (a tuple-shaped tree here) changes nothing, one in a trained leaf skips the step. With
    ``grad=`` (what a train step passes), a leaf read there counts as read too."""
    tx = jopt.skip_nonfinite(
        jopt.groups([("frozen", "0", "freeze")], default=jopt.with_hparams(jopt.adam)(0.1))
    )
    params = (jnp.ones(2), {"w": jnp.ones(3)})
    state = tx.init(params)

    def update(g, s, p):
        return tx.update(g, s, p, grad=g) if with_grad_arg else tx.update(g, s, p)

    nan_frozen = (jnp.array([jnp.nan, 1.0]), {"w": jnp.ones(3)})
    u, s = jax.jit(update)(nan_frozen, state, params)
    assert not bool(s.skipped) and int(s.total) == 0
    np.testing.assert_array_equal(u[0], [0.0, 0.0])
    np.testing.assert_allclose(u[1]["w"], -0.1 * np.ones(3), rtol=1e-6)
    nan_trained = (jnp.ones(2), {"w": jnp.array([1.0, jnp.inf, 1.0])})
    u, s = jax.jit(update)(nan_trained, state, params)
    assert bool(s.skipped) and int(s.total) == 1
    # An optimizer that reads a leaf only through ``grad=`` still has it checked.
    reader = jopt.skip_nonfinite(
        jopt.core.GradientTransformation(
            lambda p: (), lambda u, st, p=None, grad=None, **kw: (grad, st)
        )
    )
    _, s = jax.jit(lambda g: reader.update(g, reader.init(params), params, grad=g))(nan_frozen)
    assert bool(s.skipped)


def test_max_consecutive_raises_on_the_host():
    tx = jopt.with_norms(jopt.skip_nonfinite(jopt.sgd(0.1), max_consecutive=2))
    _, state = _run(tx, _grads_with_nan_at([1, 2]), 4)
    assert int(jopt.metrics(state)["skip/total"]) == 2
    jopt.check_state(state)  # two in a row is within the limit, and the counter was reset
    _, state = _run(tx, _grads_with_nan_at([0, 1, 2]), 3)
    with pytest.raises(jopt.NonFiniteError, match=r"3 consecutive steps.*max_consecutive=2"):
        jopt.check_state(state)
    with pytest.raises(jopt.JoptError, match="max_consecutive"):
        jopt.skip_nonfinite(jopt.sgd(0.1), max_consecutive=-1)


def test_ema_matches_closed_form():
    d, lr, steps = 0.8, 0.1, 6
    g = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.ones(())}
    tx = jopt.with_param_ema(jopt.sgd(lr), decay=d)
    _, state = _run(tx, lambda p, i: g, steps)
    # theta_t = theta_0 - t lr g;  ema_t = d^t theta_0 + (1-d) sum_i d^(t-i) theta_i.
    for key in ("w", "b"):
        p0, gk = np.asarray(_P0[key], np.float64), np.asarray(g[key], np.float64)
        thetas = [p0 - i * lr * gk for i in range(steps + 1)]
        expected = d**steps * p0 + (1 - d) * sum(
            d ** (steps - i) * thetas[i] for i in range(1, steps + 1)
        )
        np.testing.assert_allclose(jopt.ema_params(state)[key], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(jopt.JoptError, match=r"no jopt\.with_param_ema"):
        jopt.ema_params(jopt.sgd(0.1).init(_P0))
    with pytest.raises(jopt.JoptError, match="decay"):
        jopt.with_param_ema(jopt.sgd(0.1), decay=1.5)


def test_lookahead_matches_optax_fast_weights():
    k, alpha = 3, 0.5
    tx = jopt.with_lookahead(jopt.sgd(0.1, momentum=0.5), sync_period=k, slow_step_size=alpha)
    ref = optax.lookahead(optax.sgd(0.1, momentum=0.5), sync_period=k, slow_step_size=alpha)
    params, state = _P0, tx.init(_P0)
    ref_params = optax.LookaheadParams.init_synced(_P0)
    ref_state = ref.init(ref_params)
    for i in range(7):
        u, state = tx.update(_grad(params, _X, _Y), state, params)
        params = jopt.apply_updates(params, u)
        g = _grad(ref_params.fast, _X, _Y)
        with jax.numpy_dtype_promotion("standard"):  # optax.lookahead mixes bool and float
            ru, ref_state = ref.update(g, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, ru)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
            params,
            ref_params.fast,
        )
        assert bool(jopt.metrics(state)["lookahead/synced"]) == ((i + 1) % k == 0)


def test_precision_policy_per_slot():
    params = {"w": jnp.ones(3)}
    tx = jopt.with_precision(jopt.adam(0.1), mu_dtype=jnp.bfloat16, nu_dtype=jnp.float16)
    _, state = _run(tx, lambda p, i: {"w": jnp.full(3, 0.5)}, 2, params)
    mu = [x for x in jax.tree.leaves(state) if x.dtype == jnp.bfloat16]
    nu = [x for x in jax.tree.leaves(state) if x.dtype == jnp.float16]
    assert len(mu) == 1 and len(nu) == 1
    # m_2 = (1 - 0.9^2) * 0.5 rounded to bfloat16.
    np.testing.assert_allclose(np.asarray(mu[0], np.float32), 0.095, rtol=1e-2)
    acc = jopt.with_precision(jopt.accumulate(jopt.sgd(0.1), 2), accumulator_dtype="bfloat16")
    assert acc.init(params).acc["w"].dtype == jnp.bfloat16
    with pytest.raises(jopt.JoptError, match="floating"):
        jopt.with_precision(jopt.adam(0.1), mu_dtype=jnp.int32)


# --- the registry contract (jit, dtypes, extra args, no retrace) for the remaining ones ---

_BASE = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
# with_hparams, groups, accumulate, skip_nonfinite, with_lookahead, with_param_ema and with_norms
# are entries of tests/registry.py (the core contract and parity tests); these are the ones it
# cannot hold.
COMBINATORS = {
    "groups_freeze": lambda: jopt.groups([("b", "b", "freeze")], default=jopt.sgd(0.1)),
    "tap": lambda: jopt.chain(jopt.tap("g"), jopt.adam(0.05)),
    # bfloat16 state on purpose: the registry requires float32-or-wider slots.
    "with_precision": lambda: jopt.with_precision(jopt.adam(0.05), mu_dtype=jnp.bfloat16),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(COMBINATORS))
def test_contract(name, dtype):
    tx = COMBINATORS[name]()
    params = jax.tree.map(lambda x: x.astype(dtype), _BASE)

    def step(p, s):
        g = jax.tree.map(lambda x: 2.0 * x, p)  # the gradient of sum(x^2)
        u, s = tx.update(g, s, p, value=jnp.zeros(()), unknown_extra=1)
        return jopt.apply_updates(p, u), s

    counter = TraceCounter(step)
    jstep = jax.jit(counter)
    state = tx.init(params)
    dtypes = [x.dtype for x in jax.tree.leaves(state)]
    start = float(jopt.global_norm(params))
    for _ in range(6):
        params, state = jstep(params, state)
    assert counter.count == 1
    assert [x.dtype for x in jax.tree.leaves(state)] == dtypes
    assert all(p.dtype == dtype for p in jax.tree.leaves(params))
    assert float(jopt.global_norm(params)) < start  # it descends on sum(x^2)
    assert all(jnp.shape(v) == () for v in jopt.metrics(state).values())
    if name != "with_precision":  # default policy: float32 slots, also for bfloat16 params
        assert all(d.itemsize >= 4 for d in dtypes if jnp.issubdtype(d, jnp.floating))


def test_bad_arguments_raise_one_line_errors():
    cases = [
        (lambda: jopt.with_lookahead(jopt.sgd(0.1), sync_period=0), "sync_period"),
        (lambda: jopt.with_lookahead(jopt.sgd(0.1), slow_step_size=2.0), "slow_step_size"),
        (lambda: jopt.tap(""), "tap: name"),
        (
            lambda: jopt.with_param_ema(jopt.sgd(0.1)).update(
                _P0, jopt.with_param_ema(jopt.sgd(0.1)).init(_P0)
            ),
            "params",
        ),
        (lambda: jopt.with_precision(jopt.sgd(0.1), accumulator_dtype="nonsense"), "not a dtype"),
    ]
    for make, match in cases:
        with pytest.raises(jopt.JoptError, match=match) as e:
            make()
        assert "\n" not in str(e.value)


def test_skip_nonfinite_state_can_be_donated():
    # issue 12: jopt.train.fit donates the state; skip_nonfinite held one zero twice.
    tx = jopt.skip_nonfinite(jopt.adam(1e-2), max_consecutive=3)
    params = {"w": jnp.ones(3), "b": (jnp.zeros(2),)}
    state = tx.init(params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jopt.apply_updates(params, updates), state

    jstep = jax.jit(step, donate_argnums=(0, 1))
    grads = jax.tree.map(jnp.ones_like, params)
    params, state = jstep(params, state, grads)
    bad = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), grads)
    params, state = jstep(params, state, bad)
    assert int(state.total) == 1 and int(state.consecutive) == 1
    assert bool(jnp.all(jnp.isfinite(params["w"])))
