"""Shared test helpers."""

from __future__ import annotations

import functools

import jax


class TraceCounter:
    """Wrap a function and count how many times JAX traces it.

    >>> counter = TraceCounter(step); f = jax.jit(counter); f(x); f(x); assert counter.count == 1
    """

    def __init__(self, fn):
        self.fn = fn
        self.count = 0
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.fn(*args, **kwargs)


def tree_max_rel_err(a, b) -> float:
    """The largest elementwise relative error ``|a-b| / max(|b|, tiny)`` over two trees."""
    import jax.numpy as jnp

    errs = jax.tree.map(lambda x, y: jnp.max(jnp.abs(x - y) / jnp.maximum(jnp.abs(y), 1e-12)), a, b)
    return float(max(jax.tree.leaves(errs), default=0.0))
