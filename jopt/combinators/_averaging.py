"""Parameter averaging: :func:`with_param_ema` (Polyak averaging) and :func:`with_lookahead`.

Not ``optax.ema`` / ``optax.lookahead``: those mean something else (an EMA of the updates; slow
weights in a special parameter type), so jopt's wrappers carry other names.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jopt.combinators._robust import AccumulateTransformation
from jopt.combinators._walk import combinator_state, nodes
from jopt.core import (
    GradientTransformation,
    JoptError,
    call_update,
    map_elementwise,
    safe_increment,
    state_dtype,
)


def _copy(params: Any, dtype: Any) -> Any:
    # A real copy (astype to the same dtype returns the same buffer): state that aliases the
    # parameters cannot be donated to a jitted step together with them.
    return jax.tree.map(lambda p: jnp.array(p, dtype=state_dtype(p, dtype), copy=True), params)


def _refuse_outside_accumulate(tx: Any, name: str) -> None:
    # Exact or refused: outside accumulate, every micro-step would count as a step (an EMA
    # decayed k times per real step, a lookahead synced on micro-steps).
    if isinstance(tx, AccumulateTransformation):
        raise JoptError(
            f"{name}(accumulate(tx, k)) would count micro-steps as steps; "
            f"write accumulate({name}(tx), k) instead"
        )


def _need_params(params: Any, name: str) -> None:
    if params is None:
        raise JoptError(f"{name}: update needs params; call tx.update(grads, state, params)")


@combinator_state()
class ParamEmaState:
    """State of :func:`with_param_ema`.

    Attributes:
        inner_state: the wrapped optimizer's state.
        ema: the averaged parameters (float32 or wider for low-precision parameters).
        count: int32 number of updates so far (saturating).
    """

    inner_state: Any
    ema: Any
    count: jax.Array


def with_param_ema(tx: Any, decay: float = 0.999, ema_dtype: Any = None) -> GradientTransformation:
    """Keep an exponential moving average of the parameters ``tx`` produces.

    .. math::

        \\bar\\theta_0 = \\theta_0, \\qquad
        \\bar\\theta_t = d\\,\\bar\\theta_{t-1} + (1-d)\\,\\theta_t,\\qquad
        \\theta_t = \\theta_{t-1} + u_t

    (Polyak & Juditsky 1992). The updates are ``tx``'s, unchanged; read the average with
    :func:`ema_params` for evaluation.

    Args:
        tx: the optimizer.
        decay: ``d`` in [0, 1].
        ema_dtype: dtype of the average; float32 or wider by default.
    """
    if not isinstance(decay, jax.Array) and not 0.0 <= float(decay) <= 1.0:
        raise JoptError(f"with_param_ema: decay must be in [0, 1], got {decay!r}")
    _refuse_outside_accumulate(tx, "with_param_ema")

    def init_fn(params):
        return ParamEmaState(tx.init(params), _copy(params, ema_dtype), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        _need_params(params, "with_param_ema")
        updates, inner = call_update(tx, updates, state.inner_state, params, **extra_args)

        def average(e, p, u):
            new_p = p.astype(e.dtype) + u.astype(e.dtype)
            return (decay * e + (1.0 - decay) * new_p).astype(e.dtype)

        new_ema = map_elementwise(average, state.ema, params, updates)
        return updates, ParamEmaState(inner, new_ema, safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


def ema_params(state: Any) -> Any:
    """The averaged parameters of the (first) :func:`with_param_ema` in ``state``.

    Raises:
        JoptError: when ``state`` holds no ``with_param_ema``.
    """
    for _, node in nodes(state):
        if isinstance(node, ParamEmaState):
            return node.ema
    raise JoptError("ema_params: the state holds no jopt.with_param_ema(...) average")


@combinator_state(meta=("sync_period",))
class LookaheadSlowState:
    """State of :func:`with_lookahead`.

    Attributes:
        inner_state: the fast optimizer's state.
        slow: the slow weights.
        count: int32 number of fast steps so far (saturating).
        synced: bool, whether the last step synchronized (params == slow weights after it).
        sync_period: static; ``k``.
    """

    inner_state: Any
    slow: Any
    count: jax.Array
    synced: jax.Array
    sync_period: int = 1

    def _metrics(self) -> dict[str, jax.Array]:
        return {"lookahead/synced": self.synced}


def with_lookahead(
    tx: Any, sync_period: int = 6, slow_step_size: float = 0.5
) -> GradientTransformation:
    """Lookahead (Zhang et al. 2019), a drop-in: parameters are passed as usual.

    The parameters the caller holds are the fast weights. Every ``k = sync_period`` steps
    the slow weights move toward them and the fast weights jump to the slow ones:

    .. math::

        \\phi \\leftarrow \\phi + \\alpha(\\theta_t - \\phi), \\quad \\theta_t \\leftarrow \\phi

    Unlike ``optax.lookahead``, the slow weights live in the state, not in a special
    parameter type; after a synchronizing step the parameters equal them.

    Args:
        tx: the fast optimizer.
        sync_period: ``k``, an int >= 1.
        slow_step_size: ``alpha`` in [0, 1].
    """
    if isinstance(sync_period, bool) or not isinstance(sync_period, int) or sync_period < 1:
        raise JoptError(f"with_lookahead: sync_period must be an int >= 1, got {sync_period!r}")
    if not 0.0 <= float(slow_step_size) <= 1.0:
        raise JoptError(f"with_lookahead: slow_step_size must be in [0, 1], got {slow_step_size!r}")
    _refuse_outside_accumulate(tx, "with_lookahead")

    def init_fn(params):
        return LookaheadSlowState(
            tx.init(params),
            _copy(params, None),
            jnp.zeros([], jnp.int32),
            jnp.array(False),
            sync_period,
        )

    def update_fn(updates, state, params=None, **extra_args):
        _need_params(params, "with_lookahead")
        fast_updates, inner = call_update(tx, updates, state.inner_state, params, **extra_args)
        count = safe_increment(state.count)
        sync = count % sync_period == 0

        def combine(u, p, s):
            fast = p.astype(s.dtype) + u.astype(s.dtype)
            new_slow = jnp.where(sync, s + slow_step_size * (fast - s), s).astype(s.dtype)
            out = jnp.where(sync, new_slow - p.astype(s.dtype), u.astype(s.dtype))
            return out.astype(u.dtype), new_slow

        new_updates, slow = map_elementwise(combine, fast_updates, params, state.slow, n_out=2)
        return new_updates, LookaheadSlowState(inner, slow, count, sync, sync_period)

    return GradientTransformation(init_fn, update_fn)
