"""Precision policy: the dtype of each kind of state slot."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jopt.core import GradientTransformation, JoptError, call_update

# State fields by kind, as jopt's and optax's states name them.
FIRST_MOMENT = frozenset({"mu", "m", "momentum", "exp_avg"})
SECOND_MOMENT = frozenset({"nu", "nu_max", "v", "sum_of_squares", "exp_avg_sq", "e_x", "e_g"})
ACCUMULATOR = frozenset({"trace", "acc", "accumulator", "grad_acc"})


def _slot_kind(path: tuple) -> str | None:
    # The last attribute name on the path is the state field the leaf belongs to.
    for key in reversed(path):
        name = getattr(key, "name", None)
        if name is not None:
            if name in FIRST_MOMENT:
                return "first"
            if name in SECOND_MOMENT:
                return "second"
            if name in ACCUMULATOR:
                return "accumulator"
            return None
    return None


def cast_state(state: Any, policy: dict[str, Any]) -> Any:
    """Cast the floating leaves of ``state`` whose slot kind has a dtype in ``policy``."""

    def cast(path, x):
        kind = _slot_kind(path)
        dtype = policy.get(kind)
        if dtype is None or not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
            return x
        return jnp.asarray(x).astype(dtype)

    return jax.tree_util.tree_map_with_path(cast, state)


def with_precision(
    tx: Any, *, mu_dtype: Any = None, nu_dtype: Any = None, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Choose the dtype of each kind of state slot of ``tx``, whatever built it.

    Slots are recognized by their state field names: first moments (``mu``, ``momentum``...),
    second moments (``nu``, ``nu_max``, ``sum_of_squares``...) and accumulators (``trace``,
    ``acc``...). They are cast at ``init`` and after every ``update``, so the dtype holds even
    for a transform that would promote. ``None`` keeps the transform's own choice, which in
    jopt is float32 (or wider) for every slot, also for bfloat16 parameters.

    A narrow slot is a *storage* dtype: it is widened to float32 for the update and the result
    is rounded back (the memory saving of optax's ``mu_dtype``, for every slot).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.with_precision(jopt.adam(1e-3), mu_dtype=jnp.bfloat16)
        >>> tx.init({"w": jnp.ones(2)})[0].mu["w"].dtype
        dtype(bfloat16)
    """
    policy = {}
    for kind, dtype in (
        ("first", mu_dtype),
        ("second", nu_dtype),
        ("accumulator", accumulator_dtype),
    ):
        if dtype is None:
            continue
        try:
            dtype = jnp.dtype(dtype)
        except TypeError:
            raise JoptError(f"with_precision: {dtype!r} is not a dtype") from None
        if not jnp.issubdtype(dtype, jnp.floating):
            raise JoptError(f"with_precision: state dtype must be floating, got {dtype}")
        policy[kind] = dtype

    def init_fn(params):
        return cast_state(tx.init(params), policy)

    # The maths runs in float32 (or wider): narrow slots are widened before the inner update
    # and rounded after it. Inner transforms then never see mixed dtypes, which strict
    # promotion would reject, and rounding happens once per step.
    compute = {k: d if d.itemsize >= 4 else jnp.dtype(jnp.float32) for k, d in policy.items()}

    def update_fn(updates, state, params=None, **extra_args):
        updates, state = call_update(tx, updates, cast_state(state, compute), params, **extra_args)
        return updates, cast_state(state, policy)

    return GradientTransformation(init_fn, update_fn)
