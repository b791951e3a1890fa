"""Tree helpers.

:func:`map_elementwise` is *the* way jopt applies per-array maths to a pytree. Elementwise
transforms write their maths as a function of arrays and hand it to this helper, never to
``jax.tree.map`` directly. The fused executor (``jopt.fused``) relies on this: it calls the same
transforms with trees whose leaves are packed buffers, so the same per-array maths runs once
per buffer instead of once per leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

_INT32_MAX = jnp.iinfo(jnp.int32).max


def map_elementwise(fn: Callable[..., Any], tree: Any, *rest: Any, n_out: int = 1) -> Any:
    """Apply ``fn(leaf, *matching_leaves)`` to every array leaf of ``tree``.

    The structure comes from ``tree`` (the input), never from what ``fn`` returns, so tuple,
    list and NamedTuple parameters (equinox modules, ``(w, b)`` pairs) map like dicts. ``rest``
    are trees with the structure of ``tree`` (or with ``tree`` as a prefix). A function that
    returns several arrays says how many with ``n_out``; the result is then a tuple of
    ``n_out`` trees, each with the structure of ``tree``. ``None`` nodes (masked-out
    parameters) stay ``None``, and an empty tree gives empty trees.
    """
    treedef = jax.tree.structure(tree)
    columns = [treedef.flatten_up_to(t) for t in (tree, *rest)]
    outs = [fn(*args) for args in zip(*columns, strict=True)]
    if n_out == 1:
        return treedef.unflatten(outs)
    for out in outs:
        if not isinstance(out, tuple) or len(out) != n_out:
            raise TypeError(f"map_elementwise: fn must return a tuple of {n_out} arrays")
    return tuple(treedef.unflatten([o[i] for o in outs]) for i in range(n_out))


def state_dtype(x: jax.Array, dtype: Any = None) -> jnp.dtype:
    """The dtype of an optimizer-state slot for parameter ``x``.

    An explicit ``dtype`` wins. Otherwise floating parameters get at least float32 state
    (bfloat16/float16 parameters keep float32 moments; float64 stays float64).
    """
    if dtype is not None:
        return jnp.dtype(dtype)
    x_dtype = jnp.asarray(x).dtype
    if jnp.issubdtype(x_dtype, jnp.floating):
        # Not jnp.promote_types: under strict promotion bfloat16/float32 has no promotion.
        return x_dtype if x_dtype.itemsize >= 4 else jnp.dtype(jnp.float32)
    return x_dtype


def zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros with each leaf's shape, in :func:`state_dtype` (float32 for low-precision params)."""
    return jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), state_dtype(x, dtype)), tree)



def squared_norm(tree: Any) -> jax.Array:
    """Sum of squares of all leaves, accumulated in float32 (or wider)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return sum(jnp.sum(jnp.square(x.astype(state_dtype(x)))) for x in leaves)


def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of the whole tree, as if its leaves were concatenated."""
    return jnp.sqrt(squared_norm(tree))


def all_finite(tree: Any) -> jax.Array:
    """``True`` when every element of every leaf is finite."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def scalar_as(x: Any, like: jax.Array) -> jax.Array:
    """Hyperparameter ``x`` (a Python number or a traced scalar array) in ``like``'s dtype.

    Hyperparameters may arrive as float32 arrays (issue 3 keeps them in the state), and strict
    dtype promotion forbids ``float32_array * bfloat16_array``; casting them to the dtype of
    the array they multiply keeps every transform valid for both kinds.
    """
    return jnp.asarray(x).astype(jnp.asarray(like).dtype)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1`` for an int32 step counter, saturating at the int32 maximum."""
    return jnp.where(count < _INT32_MAX, count + 1, _INT32_MAX).astype(jnp.int32)
