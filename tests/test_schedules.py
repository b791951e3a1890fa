"""Schedules against their closed forms (boundaries included), optax, jit and dtypes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jopt import JoptError, schedules

S = schedules


def _cos_interp(a, b, pct):
    return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)


CLOSED_FORMS = {
    "constant": (S.constant(0.3), {0: 0.3, 7: 0.3, 10**6: 0.3}),
    "piecewise_constant": (
        S.piecewise_constant(1.0, {10: 0.5, 20: 0.1}),
        {0: 1.0, 9: 1.0, 10: 0.5, 19: 0.5, 20: 0.05, 100: 0.05},
    ),
    "step_decay": (S.step_decay(1.0, 10, 0.5), {0: 1.0, 9: 1.0, 10: 0.5, 25: 0.25, 30: 0.125}),
    "exponential": (
        S.exponential_decay(1.0, 10, 0.5, transition_begin=5),
        {0: 1.0, 5: 1.0, 10: 0.5**0.5, 15: 0.5, 25: 0.25},
    ),
    "exponential_staircase_floor": (
        S.exponential_decay(1.0, 10, 0.5, staircase=True, end_value=0.3),
        {0: 1.0, 9: 1.0, 10: 0.5, 19: 0.5, 20: 0.3, 100: 0.3},
    ),
    "exponential_growth_ceiling": (
        S.exponential_decay(1.0, 10, 2.0, end_value=3.0),
        {0: 1.0, 10: 2.0, 15: 2.0**1.5, 20: 3.0, 50: 3.0},
    ),
    "polynomial": (
        S.polynomial(1.0, 0.1, 2.0, 10, transition_begin=5),
        {0: 1.0, 5: 1.0, 10: 0.9 * 0.25 + 0.1, 15: 0.1, 100: 0.1},
    ),
    "linear": (S.linear(0.0, 1.0, 10), {0: 0.0, 5: 0.5, 10: 1.0, 20: 1.0}),
    "cosine": (
        S.cosine_decay(2.0, 100, alpha=0.1, exponent=2.0),
        {
            0: 2.0,
            50: 2.0 * (0.9 * 0.25 + 0.1),
            100: 0.2,
            150: 0.2,
            25: 2.0 * (0.9 * (0.5 * (1 + math.cos(math.pi / 4))) ** 2 + 0.1),
        },
    ),
    "warmup_cosine": (
        S.warmup_cosine_decay(0.0, 1.0, 10, 110, end_value=0.1),
        {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.55, 110: 0.1, 200: 0.1},
    ),
    "one_cycle_cos": (
        S.one_cycle(100, 1.0),
        {0: 0.04, 15: 0.52, 30: 1.0, 65: _cos_interp(1.0, 4e-6, 0.5), 100: 4e-6, 150: 4e-6},
    ),
    "one_cycle_linear": (
        S.one_cycle(100, 1.0, anneal="linear"),
        {0: 0.04, 15: 0.52, 30: 1.0, 85: 0.04, 100: 4e-6, 120: 4e-6},
    ),
    "join": (
        S.join_schedules([S.constant(1.0), S.linear(1.0, 0.0, 10)], [5]),
        {0: 1.0, 4: 1.0, 5: 1.0, 10: 0.5, 15: 0.0, 30: 0.0},
    ),
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_closed_form(name):
    fn, expected = CLOSED_FORMS[name]
    steps = sorted(expected)
    jitted = jax.jit(jax.vmap(fn))(jnp.asarray(steps, jnp.int32))
    assert jitted.dtype == jnp.float32
    for step, value in zip(steps, np.asarray(jitted), strict=True):
        assert value == pytest.approx(expected[step], rel=1e-5, abs=1e-7), f"step {step}"
        eager = fn(step)  # a Python int count works too
        assert eager.dtype == jnp.float32
        assert float(eager) == pytest.approx(expected[step], rel=1e-5, abs=1e-7)


SAME_AS_OPTAX = [
    (
        S.piecewise_constant(0.1, {30: 0.3, 60: 0.5}),
        optax.piecewise_constant_schedule(0.1, {30: 0.3, 60: 0.5}),
    ),
    (
        S.exponential_decay(0.1, 7, 0.9, 3, True, 0.05),
        optax.exponential_decay(0.1, 7, 0.9, 3, True, 0.05),
    ),
    (S.polynomial(0.1, 0.01, 1.5, 50, 10), optax.polynomial_schedule(0.1, 0.01, 1.5, 50, 10)),
    # exponential_decay is optax's name, so it has optax's edge cases: a zero rate or a
    # non-positive transition is the constant init_value, a negative transition_begin counts as 0.
    (S.exponential_decay(1.0, 2, decay_rate=0.0), optax.exponential_decay(1.0, 2, 0.0)),
    (S.exponential_decay(0.5, 0, 0.9), optax.exponential_decay(0.5, 0, 0.9)),
    (S.exponential_decay(0.5, -4, 0.9), optax.exponential_decay(0.5, -4, 0.9)),
    (S.exponential_decay(0.5, 10, 0.9, -5), optax.exponential_decay(0.5, 10, 0.9, -5)),
    (S.cosine_decay(0.1, 80, 0.2, 1.5), optax.cosine_decay_schedule(0.1, 80, 0.2, 1.5)),
    (
        S.warmup_cosine_decay(0.0, 0.1, 20, 100, 0.01),
        optax.warmup_cosine_decay_schedule(0.0, 0.1, 20, 100, 0.01),
    ),
    (
        S.one_cycle(90, 0.1, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
        optax.cosine_onecycle_schedule(90, 0.1, 0.25, 10.0, 100.0),
    ),
    (
        S.one_cycle(
            90,
            0.1,
            pct_start=0.25,
            pct_final=0.8,
            div_factor=10.0,
            final_div_factor=100.0,
            anneal="linear",
        ),
        optax.linear_onecycle_schedule(90, 0.1, 0.25, 0.8, 10.0, 100.0),
    ),
]


@pytest.mark.parametrize("ours, theirs", SAME_AS_OPTAX)
def test_same_as_optax(ours, theirs):
    steps = jnp.arange(0, 130, dtype=jnp.int32)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes dtypes freely
        ref = np.asarray(jax.jit(jax.vmap(theirs))(steps))
    # atol: near the end of a cosine anneal both sides cancel (cos + 1 ~ 0) in float32.
    np.testing.assert_allclose(
        np.asarray(jax.jit(jax.vmap(ours))(steps)), ref, rtol=2e-6, atol=1e-8
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: S.cosine_decay(1.0, 0), "decay_steps must be a positive"),
        (lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 10), "warmup_steps < decay_steps"),
        (lambda: S.one_cycle(100, 1.0, anneal="triangle"), "anneal must be"),
        (lambda: S.one_cycle(100, 1.0, pct_start=0.9, anneal="linear"), "pct_start <= pct_final"),
        (lambda: S.step_decay(1.0, 0), "step_size must be a positive"),
        # jopt's own spellings refuse what optax's names turn into a constant
        (lambda: S.polynomial(1.0, 0.0, 1.0, -3), "transition_steps must be a positive"),
        (lambda: S.linear(1.0, 0.0, 10, -1), "transition_begin must be >= 0"),
        (lambda: S.piecewise_constant(1.0, {5: -1.0}), "non-negative"),
        (lambda: S.join_schedules([S.constant(1.0)], [5]), "need 0 boundaries"),
    ],
)
def test_bad_arguments_raise_one_line_jopt_error(make, match):
    with pytest.raises(JoptError, match=match) as e:
        make()
    assert "\n" not in str(e.value)


def test_one_cycle_takes_its_shape_by_keyword_only():
    # optax's cosine and linear one-cycle schedules put pct_final in different places, so a
    # positional call could silently mean the other schedule; jopt refuses it.
    with pytest.raises(TypeError):
        S.one_cycle(100, 1.0, 0.3)
