"""optax's schedule names, transforms and wrappers in jopt, each against optax itself.

The optimizers of the catalogue are in the registry (``tests/registry_catalogue.py``), so the
contract and parity tests cover them; this file covers what the registry cannot: schedules,
stateless filters, wrappers, Polyak SGD (it needs ``value=``) and the signatures of the two
entries whose optax oracle is wrapped.
"""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt

STEPS = np.arange(-3, 260)  # negative counts, the boundaries and past the end


def _values(sched, steps=STEPS, promotion="strict"):
    # All steps at once (vmapped over the count); a constant output broadcasts.
    with jax.numpy_dtype_promotion(promotion):  # optax's schedules need the standard rules
        out = jax.vmap(lambda c: jnp.asarray(sched(c)))(jnp.asarray(steps, jnp.int32))
        out = np.asarray(out, np.float64)
    return np.broadcast_to(out, np.shape(steps))


SCHEDULES = [
    ("constant_schedule", (0.3,), {}),
    ("polynomial_schedule", (1.0, 0.1, 2.0, 100), {"transition_begin": 20}),
    ("polynomial_schedule", (1.0, 0.1, 2.0, 0), {}),  # optax: constant
    ("polynomial_schedule", (1.0, 0.1, 0.5, 50), {"transition_begin": -5}),
    ("linear_schedule", (0.0, 1.0, 100), {"transition_begin": 10}),
    ("piecewise_constant_schedule", (1.0, {50: 0.5, 100: 0.1, 0: 2.0}), {}),
    ("piecewise_constant_schedule", (1.0,), {}),
    ("cosine_decay_schedule", (1.0, 100), {"alpha": 0.1, "exponent": 2.0}),
    ("warmup_constant_schedule", (0.0, 1.0, 30), {}),
    ("warmup_cosine_decay_schedule", (0.0, 1.0, 20, 200, 0.05), {}),
    ("warmup_cosine_decay_schedule", (0.1, 0.0, 20, 200), {}),  # peak 0: alpha 0
    ("warmup_exponential_decay_schedule", (0.0, 1.0, 20, 30, 0.5), {"end_value": 0.1}),
    ("warmup_exponential_decay_schedule", (0.0, 1.0, 20, 30, 0.5, 10, True), {}),
    ("warmup_exponential_decay_schedule", (0.0, 1.0, 20, 0, 0.5), {}),  # constant after
    (
        "sgdr_schedule",
        (
            [
                dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=80),
                dict(init_value=0.0, peak_value=0.5, warmup_steps=5, decay_steps=60),
            ],
        ),
        {},
    ),
    ("linear_onecycle_schedule", (200, 1.0), {}),
    ("cosine_onecycle_schedule", (200, 1.0), {"pct_start": 0.25}),
    ("piecewise_interpolate_schedule", ("linear", 1.0, {40: 2.0, 40 + 60: 0.1}), {}),
    ("piecewise_interpolate_schedule", ("cosine", 1.0, {0: 3.0, 90: 0.5}), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), SCHEDULES, ids=lambda x: str(x)[:40])
def test_schedule_matches_optax(name, args, kwargs):
    ours = getattr(jopt.schedules, name)(*args, **kwargs)
    theirs = getattr(optax, name)(*args, **kwargs)
    a, b = _values(ours), _values(theirs, promotion="standard")
    np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=name)
    assert jnp.asarray(ours(jnp.asarray(5))).dtype == jnp.float32
    # Also under jit with a traced count (XLA may turn x / n into x * (1/n): compare with
    # optax under jit too), and for the top-level name.
    steps = (0, 7, 150)
    np.testing.assert_allclose(
        _values(jax.jit(ours), steps),
        _values(jax.jit(theirs), steps, "standard"),
        rtol=2e-6,
        atol=1e-6,
    )
    assert getattr(jopt, name) is getattr(jopt.schedules, name)


def test_schedule_names_cover_optax():
    optax_names = {n for n in dir(optax) if n.endswith("_schedule")} | {
        "exponential_decay",
        "join_schedules",
    }
    # scale_by_schedule is a transform (jopt.scale_by_schedule), not a schedule.
    assert optax_names - {"scale_by_schedule"} <= set(jopt.schedules.__all__)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: jopt.schedules.cosine_decay_schedule(1.0, 0),
        lambda: jopt.schedules.piecewise_constant_schedule(1.0, {10: -1.0}),
        lambda: jopt.schedules.piecewise_interpolate_schedule("cubic", 1.0),
        lambda: jopt.schedules.linear_onecycle_schedule(0, 1.0),
        lambda: jopt.schedules.sgdr_schedule([]),
    ],
)
def test_schedule_refusals(bad):
    with pytest.raises(jopt.JoptError):
        bad()


# --- transforms and wrappers --------------------------------------------------------------

PARAMS = {
    "w": jnp.arange(12.0).reshape(3, 4) / 7 - 0.5,
    "b": jnp.array([0.3, -0.2, 0.1]),
    "k": jnp.linspace(-1.0, 1.0, 24).reshape(2, 1, 3, 4),
}


def _grads(seed):
    leaves, treedef = jax.tree.flatten(PARAMS)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    pairs = zip(keys, leaves, strict=True)
    return treedef.unflatten([jax.random.normal(k, x.shape) for k, x in pairs])


def _run(tx, steps=6, nan_at=None, promotion="strict"):
    grads = [_grads(i) for i in range(steps)]
    if nan_at is not None:
        grads[nan_at] = {**grads[nan_at], "b": grads[nan_at]["b"].at[1].set(jnp.nan)}

    @jax.jit  # one compiled trajectory: much faster than op-by-op dispatch
    def trajectory(grads):
        out, params, state = [], PARAMS, tx.init(PARAMS)
        with jax.numpy_dtype_promotion(promotion):
            for g in grads:
                u, state = tx.update(g, state, params)
                params = optax.apply_updates(params, u)
                out.append(params)
        return out

    return trajectory(grads)


def _assert_same(ours, theirs, rtol=1e-6):
    for a, b in zip(ours, theirs, strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-7), a, b)


MASK = {"w": True, "b": False, "k": True}
LABELS = {"w": "adam", "b": "sgd", "k": "adam"}

PAIRS = {
    "adaptive_grad_clip": (
        lambda: jopt.chain(jopt.adaptive_grad_clip(0.05), jopt.sgd(0.1)),
        lambda: optax.chain(optax.adaptive_grad_clip(0.05), optax.sgd(0.1)),
    ),
    "adaptive_grad_clip(axis)": (
        lambda: jopt.chain(jopt.adaptive_grad_clip(0.05, axis=-1), jopt.sgd(0.1)),
        lambda: optax.chain(optax.adaptive_grad_clip(0.05, axis=-1), optax.sgd(0.1)),
    ),
    "centralize": (
        lambda: jopt.chain(jopt.centralize(), jopt.sgd(0.1)),
        lambda: optax.chain(optax.centralize(), optax.sgd(0.1)),
    ),
    "keep_params_nonnegative": (
        lambda: jopt.chain(jopt.sgd(0.5), jopt.keep_params_nonnegative()),
        lambda: optax.chain(optax.sgd(0.5), optax.keep_params_nonnegative()),
    ),
    "clip_by_block_rms": (
        lambda: jopt.chain(jopt.clip_by_block_rms(0.5), jopt.sgd(0.1)),
        lambda: optax.chain(optax.clip_by_block_rms(0.5), optax.sgd(0.1)),
    ),
    "scale_by_param_block_norm": (
        lambda: jopt.chain(jopt.scale_by_param_block_norm(), jopt.sgd(0.1)),
        lambda: optax.chain(optax.scale_by_param_block_norm(), optax.sgd(0.1)),
    ),
    "masked": (
        lambda: jopt.masked(jopt.adam(0.1), MASK),
        lambda: optax.masked(optax.adam(0.1), MASK),
    ),
    "masked(fn)": (
        lambda: jopt.masked(jopt.adam(0.1), lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
        lambda: optax.masked(optax.adam(0.1), lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
    ),
    "multi_transform": (
        lambda: jopt.multi_transform({"adam": jopt.adam(0.1), "sgd": jopt.sgd(0.05)}, LABELS),
        lambda: optax.multi_transform({"adam": optax.adam(0.1), "sgd": optax.sgd(0.05)}, LABELS),
    ),
    "partition(fn)": (
        lambda: jopt.partition({"adam": jopt.adam(0.1), "sgd": jopt.sgd(0.05)}, lambda p: LABELS),
        lambda: optax.partition(
            {"adam": optax.adam(0.1), "sgd": optax.sgd(0.05)}, lambda p: LABELS
        ),
    ),
    "freeze": (
        lambda: jopt.chain(jopt.adam(0.1), jopt.freeze(MASK)),
        lambda: optax.chain(optax.adam(0.1), optax.freeze(MASK)),
    ),
    "MultiSteps": (
        lambda: jopt.MultiSteps(jopt.adam(0.1), 3).gradient_transformation(),
        lambda: optax.MultiSteps(optax.adam(0.1), 3).gradient_transformation(),
    ),
    "MultiSteps(sum)": (
        lambda: jopt.MultiSteps(jopt.adam(0.1), 2, use_grad_mean=False),
        lambda: optax.MultiSteps(optax.adam(0.1), 2, use_grad_mean=False),
    ),
    "scale_by_ema": (
        lambda: jopt.chain(jopt.scale_by_ema(0.8), jopt.sgd(0.1)),
        lambda: optax.chain(optax.ema(0.8), optax.sgd(0.1)),
    ),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_transform_matches_optax(name):
    ours, theirs = PAIRS[name]
    _assert_same(_run(ours()), _run(theirs(), promotion="standard"))


def test_apply_if_finite_skips_like_optax():
    ours = _run(jopt.apply_if_finite(jopt.adam(0.1), 2), nan_at=2)
    theirs = _run(optax.apply_if_finite(optax.adam(0.1), 2), nan_at=2, promotion="standard")
    _assert_same(ours, theirs)
    _assert_same(ours[2:3], ours[1:2], rtol=0)  # the NaN step moved nothing


def test_zero_nans_matches_optax():
    tx, ref = jopt.zero_nans(), optax.zero_nans()
    g = {**PARAMS, "b": PARAMS["b"].at[0].set(jnp.nan)}
    (u, s), (v, t) = tx.update(g, tx.init(PARAMS)), ref.update(g, ref.init(PARAMS))
    _assert_same([u], [v], rtol=0)
    assert jax.tree.map(bool, s.found_nan) == jax.tree.map(bool, t.found_nan)


def test_multisteps_has_updated():
    ms = jopt.MultiSteps(jopt.sgd(0.1), 2)
    state = ms.init(PARAMS)
    flags = []
    for i in range(4):
        _, state = ms.update(_grads(i), state, PARAMS)
        flags.append(bool(ms.has_updated(state)))
    assert flags == [False, True, False, True]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: jopt.MultiSteps(jopt.sgd(0.1), lambda c: 2),
        lambda: jopt.MultiSteps(jopt.sgd(0.1), 2, should_skip_update_fn=lambda *a: False),
        lambda: jopt.multi_transform({"a": jopt.sgd(0.1)}, LABELS).init(PARAMS),
        lambda: jopt.multi_transform({"a/b": jopt.sgd(0.1)}, {"w": "a/b"}),
        lambda: jopt.multi_transform({"a": jopt.sgd(0.1)}, "a", mask_compatible_extra_args=True),
        lambda: jopt.noisy_sgd(0.1),
        lambda: jopt.optimistic_adam(jopt.schedules.constant(0.1)),
        lambda: jopt.sm3(jopt.schedules.constant(0.1)),
        lambda: jopt.polyak_sgd(variant="sps++"),
    ],
)
def test_refusals(bad):
    with pytest.raises(jopt.JoptError):
        bad()


def test_freeze_keeps_params_bitwise():
    params = _run(jopt.chain(jopt.adam(0.1), jopt.freeze(MASK)))[-1]
    assert np.array_equal(params["w"], PARAMS["w"]) and np.array_equal(params["k"], PARAMS["k"])
    assert not np.array_equal(params["b"], PARAMS["b"])


# --- Polyak SGD: needs the loss --------------------------------------------------------------


def _loss(p):
    return sum(jnp.sum((x - 0.3) ** 2) for x in jax.tree.leaves(p)) + 0.1


@pytest.mark.parametrize(
    "kw",
    [{}, {"max_learning_rate": 0.2, "scaling": 0.5, "f_min": 0.05, "eps": 1e-3, "variant": "sps+"}],
)
def test_polyak_sgd_matches_optax(kw):
    def run(tx, promotion):
        @jax.jit
        def path():
            params, state, out = PARAMS, tx.init(PARAMS), []
            with jax.numpy_dtype_promotion(promotion):
                for _ in range(20):
                    value, g = jax.value_and_grad(_loss)(params)
                    u, state = tx.update(g, state, params, value=value)
                    params = optax.apply_updates(params, u)
                    out.append(params)
            return out

        return path()

    ours, theirs = run(jopt.polyak_sgd(**kw), "strict"), run(optax.polyak_sgd(**kw), "standard")
    _assert_same(ours, theirs, rtol=2e-6)
    assert float(_loss(ours[-1])) < 0.5 * float(_loss(PARAMS))


def test_polyak_needs_value():
    tx = jopt.polyak_sgd()
    with pytest.raises(jopt.JoptError, match="value"):
        tx.update(PARAMS, tx.init(PARAMS), PARAMS)


@pytest.mark.parametrize("name", ["sm3", "optimistic_adam", "polyak_sgd"])
def test_signature_matches_optax(name):
    # These registry entries wrap their optax oracle, so the generic check cannot see them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = list(inspect.signature(getattr(optax, name)).parameters.values())
    ours = list(inspect.signature(getattr(jopt, name)).parameters.values())
    for o, t in zip(ours, theirs, strict=True):
        assert (o.name, o.kind, o.default) == (t.name, t.kind, t.default), (name, o, t)


def test_optimizers_listed_for_configs():
    from jopt.experiment._registry import optimizer_names

    names = set(optimizer_names())
    for n in ("adabelief", "adafactor", "yogi", "sm3", "lars", "fromage", "polyak_sgd", "rprop"):
        assert n in names
