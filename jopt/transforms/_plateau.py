"""Reduce the learning rate when a monitored value stops improving (optax's semantics)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    JoptError,
    inexact,
    map_elementwise,
    safe_increment,
    scalar_as,
)


class ReduceOnPlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau` (the fields of ``optax.contrib.ReduceLROnPlateauState``).

    Attributes:
        scale: float32 factor the updates are multiplied by (starts at 1).
        best_value: float32 best (lowest) averaged value seen so far (starts at ``inf``).
        plateau_count: int32 number of consecutive evaluations without improvement.
        cooldown_count: int32 evaluations left before plateaus are counted again.
        count: int32 values accumulated into ``avg_value`` since the last decision.
        avg_value: float32 running mean of the values of the current accumulation window.
        rule: the hyperparameters ``(factor, patience, rtol, atol, cooldown, min_scale,
            accumulation_size)`` as float32 scalars, so :func:`observe_plateau` needs only the
            state, and a vmapped sweep may give each member its own rule.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array
    rule: jax.Array


def _decide(state: ReduceOnPlateauState) -> ReduceOnPlateauState:
    """One plateau decision on ``state.avg_value`` (optax's ``_update_scale``, branch-free)."""
    factor, patience, rtol, atol, cooldown, min_scale, _ = state.rule
    patience, cooldown = patience.astype(jnp.int32), cooldown.astype(jnp.int32)
    avg = state.avg_value
    improved = avg < (1 - rtol) * state.best_value - atol
    best = jnp.where(improved, avg, state.best_value)
    plateau = jnp.where(improved, 0, safe_increment(state.plateau_count))
    in_cooldown = state.cooldown_count > 0
    hit = jnp.logical_and(jnp.logical_not(in_cooldown), plateau == patience)
    scale = jnp.where(hit, state.scale * factor, state.scale)
    scale = jnp.where(in_cooldown, state.scale, jnp.maximum(scale, min_scale))
    plateau = jnp.where(jnp.logical_or(in_cooldown, hit), 0, plateau).astype(jnp.int32)
    cool = jnp.where(in_cooldown, state.cooldown_count - 1, jnp.where(hit, cooldown, 0))
    return ReduceOnPlateauState(
        scale=scale,
        best_value=best,
        plateau_count=plateau,
        cooldown_count=cool.astype(jnp.int32),
        count=jnp.zeros([], jnp.int32),
        avg_value=jnp.zeros([], jnp.float32),
        rule=state.rule,
    )


def _observe(state: ReduceOnPlateauState, value: Any) -> ReduceOnPlateauState:
    """Add ``value`` to the window; decide when the window is full."""
    value = jnp.asarray(value).astype(jnp.float32)
    count = safe_increment(state.count)
    avg = (state.count.astype(jnp.float32) * state.avg_value + value) / count.astype(jnp.float32)
    state = state._replace(count=count, avg_value=avg)
    ready = count == state.rule[6].astype(jnp.int32)
    return jax.tree.map(lambda a, b: jnp.where(ready, a, b), _decide(state), state)


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradientTransformation:
    """Multiply the updates by a scale that drops by ``factor`` when ``value`` plateaus.

    Same arguments, defaults and semantics as ``optax.contrib.reduce_on_plateau``. Each call
    ``update(updates, state, params, value=v)`` adds ``v`` to a running mean; every
    ``accumulation_size`` values the mean :math:`\\bar v` is judged:

    .. math::

        \\text{improved} \\iff \\bar v < (1 - \\text{rtol})\\, v_{best} - \\text{atol}

    An improvement resets the plateau counter and records :math:`v_{best}`; otherwise the
    counter grows, and when it reaches ``patience`` (outside a cooldown) the scale becomes
    :math:`\\max(\\text{factor}\\cdot s, \\text{min\\_scale})`, the counter resets and
    ``cooldown`` decisions follow during which plateaus are not counted.

    **torch correspondence.** ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min",
    threshold_mode="rel", threshold=rtol, patience=p, cooldown=c, factor=f)`` gives the same
    learning rates as ``reduce_on_plateau(f, patience=p + 1, rtol=rtol, cooldown=c)``: torch
    reduces when the number of bad epochs *exceeds* its patience, optax (and jopt) when it
    *reaches* it (tested in ``tests/test_plateau.py``).

    **Driving it from a training loop.** ``value`` is optional in jopt: an ``update`` without
    it only applies the current scale (so a train step need not know about the plateau), and
    :func:`observe_plateau` feeds a validation metric to every plateau state inside any
    optimizer state after each evaluation. The hyperparameters live in the state
    (``rule``), so they may be traced and differ per vmapped member. Under ``jax.vmap`` over a
    sweep's members each member keeps its own scale (the decision is branch-free).

    Args:
        factor: multiplies the scale on a plateau, in (0, 1).
        patience: decisions without improvement before the scale drops.
        rtol, atol: relative and absolute improvement thresholds (not both zero).
        cooldown: decisions to wait after a drop before counting plateaus again.
        accumulation_size: values averaged per decision (1 for a validation metric).
        min_scale: the scale never drops below this.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.chain(jopt.adam(1e-2), jopt.reduce_on_plateau(patience=2))
        >>> p = {"w": jnp.ones(2)}
        >>> u, s = tx.update(p, tx.init(p), p, value=jnp.float32(1.0))

    Reference: the ``ReduceLROnPlateau`` callback of Keras and torch; optax.contrib.
    """
    if not 0.0 < factor < 1.0:
        raise JoptError(f"reduce_on_plateau: factor must be in (0, 1), got {factor}")
    if rtol < 0.0 or atol < 0.0 or (rtol == 0.0 and atol == 0.0) or rtol > 1.0:
        raise JoptError(
            f"reduce_on_plateau: need 0 <= rtol <= 1, atol >= 0, not both 0; got {rtol}, {atol}"
        )
    if int(patience) < 1 or int(accumulation_size) < 1 or int(cooldown) < 0:
        raise JoptError(
            "reduce_on_plateau: patience and accumulation_size must be >= 1 and cooldown >= 0"
        )

    rule = (factor, patience, rtol, atol, cooldown, min_scale, accumulation_size)

    def init_fn(params):
        del params
        return ReduceOnPlateauState(
            scale=jnp.ones([], jnp.float32),
            best_value=jnp.full([], jnp.inf, jnp.float32),
            plateau_count=jnp.zeros([], jnp.int32),
            cooldown_count=jnp.zeros([], jnp.int32),
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros([], jnp.float32),
            rule=jnp.asarray(rule, jnp.float32),
        )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is not None:
            state = _observe(state, value)
        s = state.scale
        return map_elementwise(lambda u: inexact(u) * scalar_as(s, inexact(u)), updates), state

    return GradientTransformation(init_fn, update_fn)


def observe_plateau(opt_state: Any, value: jax.typing.ArrayLike) -> Any:
    """Feed ``value`` (a validation metric) to every plateau state inside ``opt_state``.

    The walk finds each :class:`ReduceOnPlateauState` (through chains, named chains, tuples,
    dicts, NamedTuples) and applies the same step as ``update(..., value=value)``, without
    touching anything else. Pure and jit-able; under ``jax.vmap`` ``value`` is one metric per
    member. This is how a runner drives the plateau once per evaluation::

        opt_state = jopt.observe_plateau(opt_state, val_loss)
    """

    def fn(node):
        return _observe(node, value) if isinstance(node, ReduceOnPlateauState) else node

    return jax.tree.map(fn, opt_state, is_leaf=lambda x: isinstance(x, ReduceOnPlateauState))
