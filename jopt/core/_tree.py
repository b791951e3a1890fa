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


def _as_array(x: Any) -> Any:
    # Python numbers become arrays so the per-array maths can call .astype/.dtype on them.
    # Python bools are left alone: they are static flags (regularization masks), not data.
    if isinstance(x, (int, float, complex)) and not isinstance(x, bool):
        return jnp.asarray(x)
    return x


def map_elementwise(fn: Callable[..., Any], tree: Any, *rest: Any, n_out: int = 1) -> Any:
    """Apply ``fn(leaf, *matching_leaves)`` to every array leaf of ``tree``.

    The structure comes from ``tree`` (the input), never from what ``fn`` returns, so tuple,
    list and NamedTuple parameters (equinox modules, ``(w, b)`` pairs) map like dicts. ``rest``
    are trees with the structure of ``tree`` (or with ``tree`` as a prefix). A function that
    returns several arrays says how many with ``n_out``; the result is then a tuple of
    ``n_out`` trees, each with the structure of ``tree``. ``None`` nodes (masked-out
    parameters, optax's ``MaskedNode``) stay as they are, and an empty tree gives empty trees.
    Python-number leaves reach ``fn`` as arrays; integer arrays arrive unchanged (transforms
    compute their updates with :func:`inexact`).
    """
    treedef = jax.tree.structure(tree)
    columns = [treedef.flatten_up_to(t) for t in (tree, *rest)]
    outs = [fn(*map(_as_array, args)) for args in zip(*columns, strict=True)]
    if n_out == 1:
        return treedef.unflatten(outs)
    for out in outs:
        if not isinstance(out, tuple) or len(out) != n_out:
            raise TypeError(f"map_elementwise: fn must return a tuple of {n_out} arrays")
    return tuple(treedef.unflatten([o[i] for o in outs]) for i in range(n_out))


def _default_float() -> jnp.dtype:
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def inexact_dtype(x: Any) -> jnp.dtype:
    """The dtype updates of leaf ``x`` are computed in: its own when floating or complex,
    otherwise (integers, bools, Python ints) jnp's default float (float32), as optax's maths
    promotes them. Updates of integer parameters are never silently rounded to zero."""
    dtype = jnp.asarray(x).dtype
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else _default_float()


def inexact(x: Any) -> jax.Array:
    """``x`` as an array in :func:`inexact_dtype` (integer leaves become float32)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(_default_float())


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real counterpart of ``dtype`` (complex64 -> float32); real dtypes are unchanged."""
    dtype = jnp.dtype(dtype)
    return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def abs_sq(x: jax.Array, dtype: Any = None) -> jax.Array:
    """``|x|^2`` elementwise, a real array: ``x*x`` for real ``x``, ``real(x * conj(x))`` for
    complex ``x``, as optax's second moments use. With ``dtype`` (a real dtype) a real ``x`` is
    cast to it before squaring and the result is in it."""
    x = inexact(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        sq = jnp.real(x * jnp.conj(x))
        return sq if dtype is None else sq.astype(dtype)
    if dtype is not None:
        x = x.astype(dtype)
    return x * x


def compute_dtype(g: Any, state: jax.Array) -> jnp.dtype:
    """The dtype an update is computed in from gradient ``g`` and a state slot: the slot's
    dtype, or the complex one of ``g`` when ``g`` is complex and the slot is real (``|g|^2``)."""
    g_dtype = inexact_dtype(g)
    if jnp.issubdtype(g_dtype, jnp.complexfloating) and not jnp.issubdtype(
        state.dtype, jnp.complexfloating
    ):
        return g_dtype
    return jnp.dtype(state.dtype)


def state_dtype(x: jax.Array, dtype: Any = None) -> jnp.dtype:
    """The dtype of an optimizer-state slot for parameter ``x``.

    An explicit ``dtype`` wins. Otherwise floating parameters get at least float32 state
    (bfloat16/float16 parameters keep float32 moments; float64 stays float64), complex
    parameters keep their dtype, and integer/bool parameters (and Python numbers) get
    float32 state (see :func:`inexact_dtype`).
    """
    if dtype is not None:
        return jnp.dtype(dtype)
    x_dtype = inexact_dtype(x)
    if jnp.issubdtype(x_dtype, jnp.floating):
        # Not jnp.promote_types: under strict promotion bfloat16/float32 has no promotion.
        return x_dtype if x_dtype.itemsize >= 4 else jnp.dtype(jnp.float32)
    return x_dtype


def zeros_like(tree: Any, dtype: Any = None, *, real: bool = False) -> Any:
    """Zeros with each leaf's shape, in :func:`state_dtype` (float32 for low-precision params).

    ``real=True`` gives real zeros for complex leaves (second moments hold ``|g|^2``).
    """

    def zeros(x):
        dt = state_dtype(x, dtype)
        return jnp.zeros(jnp.shape(x), real_dtype(dt) if real else dt)

    return jax.tree.map(zeros, tree)


def squared_norm(tree: Any) -> jax.Array:
    """Sum of ``|x|^2`` over all leaves, accumulated in float32 (or wider); real for complex."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return sum(jnp.sum(abs_sq(jnp.asarray(x).astype(state_dtype(x)))) for x in leaves)


def global_norm(updates: Any) -> jax.Array:
    """The L2 norm of the whole tree, as if its leaves were concatenated (``optax.global_norm``)."""
    return jnp.sqrt(squared_norm(updates))


def all_finite(tree: Any) -> jax.Array:
    """``True`` when every element of every leaf is finite."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(jnp.asarray(x))) for x in leaves]))


def scalar_as(x: Any, like: jax.Array) -> jax.Array:
    """Hyperparameter ``x`` (a Python number or a traced scalar array) in ``like``'s
    :func:`inexact_dtype`.

    Hyperparameters may arrive as float32 arrays (``with_hparams`` keeps them in state), and strict
    dtype promotion forbids ``float32_array * bfloat16_array``; casting them to the dtype of
    the array they multiply keeps every transform valid for both kinds. An integer ``like``
    gives float32, never a learning rate rounded to 0.
    """
    return jnp.asarray(x).astype(inexact_dtype(like))


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1`` for an int32 step counter, saturating at the int32 maximum."""
    return jnp.where(count < _INT32_MAX, count + 1, _INT32_MAX).astype(jnp.int32)
