"""The gradient-transformation protocol.

A transformation is a pair of pure functions::

    state = init(params)
    updates, state = update(updates, state, params=None, **extra_args)

jopt's :class:`GradientTransformation` *is* an optax ``GradientTransformationExtraArgs``
(a subclass with no new fields), so every jopt transform can be passed to ``optax.chain``
and receives the extra keyword arguments optax forwards. Every ``update`` ignores extra
arguments it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

Params = Any
"""A pytree of arrays: the parameters."""
Updates = Any
"""A pytree of arrays with the structure of the parameters: gradients or updates."""
OptState = Any
"""A pytree of arrays: the state of a transformation."""
ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class GradientTransformation(optax.GradientTransformationExtraArgs):
    """A pure gradient transformation: ``init(params)`` and ``update(updates, state, params,
    **extra)``.

    It is a NamedTuple ``(init, update)`` and an optax ``GradientTransformationExtraArgs``, so
    optax accepts it everywhere and forwards extra arguments (``value=loss`` and the like).
    """

    __slots__ = ()


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


def identity() -> GradientTransformation:
    """The transformation that returns its updates unchanged."""

    def init_fn(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init_fn, update_fn)


def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
    """A transformation from ``f(updates, params) -> updates`` with no state, as optax's."""

    def init_fn(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        return f(updates, params), state

    return GradientTransformation(init_fn, update_fn)


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates``, leaf by leaf, keeping each parameter's dtype.

    The sum is computed in the promoted dtype (so a float32 update of a bfloat16 parameter is
    added at float32 precision) and then cast back to the parameter's dtype.
    """

    def add(p, u):
        if p is None:
            return None
        p, u = jnp.asarray(p), jnp.asarray(u)
        # Add in the wider of the two dtypes, written out because strict dtype promotion
        # refuses bfloat16 + float32. Integer parameters add in the update's (float) dtype and
        # are cast back, as optax does.
        if not jnp.issubdtype(p.dtype, jnp.inexact):
            return (p.astype(u.dtype) + u).astype(p.dtype)
        wide = p.dtype if p.dtype.itemsize >= u.dtype.itemsize else u.dtype
        return (p.astype(wide) + u.astype(wide)).astype(p.dtype)

    return jax.tree.map(add, params, updates, is_leaf=lambda x: x is None)
