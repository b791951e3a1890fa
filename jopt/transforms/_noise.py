"""Annealed Gaussian gradient noise."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    JoptError,
    inexact,
    inexact_dtype,
    layout_dependent,
    map_elementwise,
    safe_increment,
)


class AddNoiseState(NamedTuple):
    """State of :func:`add_noise`.

    Attributes:
        count: int32 number of updates so far (saturating), for the annealing.
        rng_key: the PRNG key the next noise is drawn from.
    """

    count: jax.Array
    rng_key: jax.Array


def _is_integer_seed(key: object) -> bool:
    if isinstance(key, bool):
        return False
    if isinstance(key, int):
        return True
    dtype = getattr(key, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.integer) and jnp.ndim(key) == 0


def add_noise(
    eta: jax.typing.ArrayLike,
    gamma: jax.typing.ArrayLike,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """Add annealed Gaussian noise to the updates (Neelakantan et al. 2015).

    .. math::

        u_t \\leftarrow u_t + \\mathcal N\\!\\left(0, \\frac{\\eta}{t^\\gamma}\\right),
        \\qquad t = 1, 2, \\dots

    i.e. variance :math:`\\eta/(1+k)^\\gamma` after :math:`k` previous updates. The noise is
    drawn from the key held in the state (split every step, one subkey per leaf), so a run is a
    pure function of ``key``; with the same key the noise equals ``optax.add_noise``'s.

    Args:
        eta: base variance.
        gamma: annealing exponent (0.55 in the paper).
        key: a ``jax.random.key`` or an integer seed. Required (``key`` or ``seed``): jopt has no
            global seed, and never falls back to seed 0 as optax does.
        seed: an integer seed, as optax's (deprecated there) ``seed``; give ``key`` or ``seed``.
    """
    if seed is not None:
        if key is not None:
            raise JoptError("add_noise: give key or seed, not both")
        key = seed
    if key is None:
        raise JoptError("add_noise needs an explicit PRNG key: pass key=jax.random.key(seed)")
    if _is_integer_seed(key):  # an int, or an integer array (optax.inject_hyperparams makes one)
        key = jax.random.key(key)

    def init_fn(params):
        del params
        # A copy of the key: donating the state must not delete the transform's own key.
        return AddNoiseState(count=jnp.zeros([], jnp.int32), rng_key=jnp.copy(key))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        std = jnp.sqrt(
            jnp.asarray(eta, jnp.float32)
            / count.astype(jnp.float32) ** jnp.asarray(gamma, jnp.float32)
        )
        # One subkey per leaf (as optax): packed buffers would draw other numbers.
        layout_dependent("add_noise draws its noise leaf by leaf (one key per leaf, as optax)")
        rng_key, sample_key = jax.random.split(state.rng_key)
        treedef = jax.tree.structure(updates)
        keys = jax.tree.unflatten(treedef, list(jax.random.split(sample_key, treedef.num_leaves)))
        noise = map_elementwise(
            lambda u, k: jax.random.normal(k, jnp.shape(u), inexact_dtype(u)), updates, keys
        )
        updates = map_elementwise(lambda u, n: inexact(u) + std.astype(n.dtype) * n, updates, noise)
        return updates, AddNoiseState(count=count, rng_key=rng_key)

    return GradientTransformation(init_fn, update_fn)
