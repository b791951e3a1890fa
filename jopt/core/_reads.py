"""Which inputs a function reads: dead-code analysis of its jaxpr, computing nothing.

A frozen parameter's gradient reaches the optimizer but no output depends on it. Finding such
inputs lets a train step skip their backward pass (``jopt.fused.unread_buffers``) and lets
:func:`jopt.skip_nonfinite` judge a step by the gradients that can change something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["unread_inputs"]


def unread_inputs(fn: Callable[..., Any], *args: Any) -> list[bool] | None:
    """For every leaf of ``args`` (``jax.tree.leaves`` order, argument by argument): ``True``
    when no output of ``fn(*args)`` depends on it.

    ``fn`` is traced once on the leaves' shapes and dtypes (``args`` may hold arrays,
    ``jax.ShapeDtypeStruct`` or tracers); nothing runs. Returns ``None`` when the analysis is
    unavailable (it uses ``jax``'s partial evaluator), so callers then treat every input as
    read.
    """
    try:
        from jax._src.interpreters import partial_eval as pe
    except ImportError:  # pragma: no cover - a future jax: everything counts as read
        return None
    leaves, treedef = jax.tree.flatten(args)
    avals = [jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x)) for x in leaves]

    def flat(*xs):
        return fn(*jax.tree.unflatten(treedef, list(xs)))

    try:
        jaxpr = jax.make_jaxpr(flat)(*avals).jaxpr
        _, used = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
    except Exception:  # pragma: no cover - internal API changed
        return None
    if len(used) != len(leaves):  # pragma: no cover - unexpected jaxpr inputs
        return None
    return [not u for u in used]
