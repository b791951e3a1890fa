"""Momentum: heavy-ball and Nesterov traces."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from jopt.core import GradientTransformation, inexact_dtype, map_elementwise, scalar_as, zeros_like


class TraceState(NamedTuple):
    """State of :func:`trace`.

    Attributes:
        trace: the momentum buffer ``m``, one array per parameter.
    """

    trace: Any


def trace(
    decay: float | jax.Array, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Heavy-ball momentum (Polyak 1964), or Nesterov momentum (Sutskever et al. 2013).

    .. math::

        m_t = \\beta m_{t-1} + g_t, \\qquad
        u_t = m_t \\;\\text{(heavy ball)} \\quad\\text{or}\\quad u_t = g_t + \\beta m_t
            \\;\\text{(Nesterov)}

    Args:
        decay: the momentum coefficient ``beta``.
        nesterov: use the Nesterov form.
        accumulator_dtype: dtype of ``m``; by default float32 or wider.
    """

    def init_fn(params):
        return TraceState(trace=zeros_like(params, accumulator_dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def step(g, m):
            beta, gm = scalar_as(decay, m), g.astype(m.dtype)
            m_new = gm + beta * m
            u = gm + beta * m_new if nesterov else m_new
            return u.astype(inexact_dtype(g)), m_new

        updates, new_trace = map_elementwise(step, updates, state.trace, n_out=2)
        return updates, TraceState(trace=new_trace)

    return GradientTransformation(init_fn, update_fn)
