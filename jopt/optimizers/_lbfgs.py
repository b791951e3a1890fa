"""L-BFGS with a line search, as ``optax.lbfgs``."""

from __future__ import annotations

from jopt.core import GradientTransformation, ScalarOrSchedule, chain, identity
from jopt.transforms import (
    scale,
    scale_by_lbfgs,
    scale_by_learning_rate,
    scale_by_zoom_linesearch,
)

_DEFAULT = object()


def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | object | None = _DEFAULT,
) -> GradientTransformation:
    """L-BFGS (Liu & Nocedal 1989): :func:`jopt.transforms.scale_by_lbfgs`, ``-1`` (or
    ``-learning_rate``), then a line search (default: zoom for the strong Wolfe conditions,
    at most 20 evaluations, first guess 1, as optax's default).

    .. math::

        x_{k+1} = x_k - \\eta_k H_k \\nabla f(x_k)

    Each ``update`` needs the extra arguments ``value``, ``grad`` and ``value_fn`` (the line
    search evaluates ``value_fn``); :func:`jopt.value_and_grad_from_state` reuses the value
    and gradient the search found at the accepted point::

        vg = jopt.value_and_grad_from_state(f)
        value, grad = vg(params, state=state)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        params = jopt.apply_updates(params, updates)

    ``linesearch=None`` takes plain steps (then only ``params`` are needed). Same arguments as
    ``optax.lbfgs``.

    Args:
        learning_rate: step scale before the line search (``None``: 1, the search decides).
        memory_size: number of past ``(s, y)`` pairs kept.
        scale_init_precond: scale the initial inverse Hessian by
            :math:`\\langle s, y\\rangle / \\langle y, y\\rangle`.
        linesearch: a line-search transform, ``None`` for plain steps; default the zoom search.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.lbfgs(linesearch=None)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    if linesearch is _DEFAULT:
        linesearch = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")
    base = scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate)
    return chain(
        scale_by_lbfgs(memory_size, scale_init_precond),
        base,
        identity() if linesearch is None else linesearch,
    )
