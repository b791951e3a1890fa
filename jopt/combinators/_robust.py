"""Robust steps: gradient accumulation and the non-finite guard."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.combinators._walk import combinator_state, nodes
from jopt.core import (
    GradientTransformation,
    JoptError,
    all_finite,
    apply_updates,
    call_update,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    unread_inputs,
    zeros_like,
)


def _no_step(updates: Any) -> Any:
    # -0.0 is the additive identity for every float (-0.0 included), so params stay bitwise.
    return map_elementwise(lambda u: jnp.full(jnp.shape(u), -0.0, inexact_dtype(u)), updates)


def _read_gradients(tx: Any, updates: Any, inner: Any, params: Any, extra: dict) -> list:
    """The leaves of ``updates`` whose value some output of ``tx.update`` depends on.

    A leaf counts as read when ``tx`` reads it as ``updates`` or as the ``grad=`` extra
    argument (a train step passes the same gradient twice). Every leaf counts when the
    analysis is unavailable or ``grad=`` is not shaped like ``updates``.
    """
    leaves = jax.tree.leaves(updates)
    grad = extra.get("grad")
    paired = grad is not None and jax.tree.structure(grad) == jax.tree.structure(updates)
    if grad is not None and not paired:
        return leaves

    def update(u, g):
        kw = dict(extra, grad=g) if paired else extra
        return call_update(tx, u, inner, params, **kw)

    unread = unread_inputs(update, updates, grad if paired else ())
    if unread is None:
        return leaves
    n = len(leaves)
    skip = unread[:n]
    if paired:
        skip = [a and b for a, b in zip(skip, unread[n:], strict=True)]
    return [x for x, cut in zip(leaves, skip, strict=True) if not cut]


def _like(new: Any, old: Any) -> Any:
    # In the dtype updates of ``old``'s leaves have (float32 for integer leaves); structure
    # from ``old``, the input.
    return map_elementwise(lambda o, n: jnp.asarray(n).astype(inexact_dtype(o)), old, new)


class AccumulateTransformation(GradientTransformation):
    """A transformation from :func:`accumulate`; attribute ``k`` (micro-steps per step).

    A distinct type so that wrappers which count steps (:func:`with_param_ema`,
    :func:`with_lookahead`) can refuse to sit *outside* it: they would count micro-steps.
    """

    # No __slots__: instances carry ``k`` in a __dict__.


@combinator_state(meta=("k", "mode"))
class AccumulateState:
    """State of :func:`accumulate`.

    Attributes:
        micro_step: int32 number of micro-batches in the buffer (0 right after a real step).
        acc: the one accumulation buffer (sum of the gradients since the last real step).
        inner_state: the wrapped transformation's state, changed only on real steps.
        applied: bool, whether the last call made a real step.
        k, mode: static; the number of micro-steps and ``"mean"`` or ``"sum"``.
    """

    micro_step: jax.Array
    acc: Any
    inner_state: Any
    applied: jax.Array
    k: int = 1
    mode: str = "mean"

    def _metrics(self) -> dict[str, jax.Array]:
        return {"accumulate/applied": self.applied, "accumulate/micro_step": self.micro_step}


def accumulate(
    tx: Any, k: int, mode: str = "mean", accumulator_dtype: Any = None
) -> AccumulateTransformation:
    """Accumulate gradients over ``k`` micro-steps, then make one step of ``tx``.

    .. math::

        a \\leftarrow a + g_i \\; (i = 1..k), \\qquad
        \\text{step with } \\bar g = a / k \\;(\\text{mean})\\ \\text{or}\\ a \\;(\\text{sum})

    With equal micro-batches of a mean loss, ``mode="mean"`` equals one step on the
    concatenated batch. Between real steps the updates are zero and ``tx``'s state does not
    move. One buffer only, in ``accumulator_dtype`` (float32 or wider by default). Under
    ``jit`` the inner step runs in a ``lax.cond`` branch.

    Args:
        tx: the optimizer to step every ``k`` calls.
        k: micro-steps per real step, an int >= 1.
        mode: ``"mean"`` or ``"sum"``.
        accumulator_dtype: dtype of the buffer.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise JoptError(f"accumulate: k must be an integer >= 1, got {k!r}")
    if mode not in ("mean", "sum"):
        raise JoptError(f"accumulate: mode must be 'mean' or 'sum', got {mode!r}")
    k = int(k)

    def init_fn(params):
        return AccumulateState(
            jnp.zeros([], jnp.int32),
            zeros_like(params, accumulator_dtype),
            tx.init(params),
            jnp.array(False),
            k,
            mode,
        )

    def update_fn(updates, state, params=None, **extra_args):
        acc = map_elementwise(
            lambda a, g: (a + g.astype(a.dtype)).astype(a.dtype), state.acc, updates
        )
        micro = state.micro_step + 1
        apply = micro >= k

        def step(_):
            grads = acc if mode == "sum" else map_elementwise(lambda a: a / k, acc)
            new, inner = call_update(
                tx, _like(grads, updates), state.inner_state, params, **extra_args
            )
            return _like(new, updates), inner, zeros_like(acc), jnp.zeros([], jnp.int32)

        def wait(_):
            return _no_step(updates), state.inner_state, acc, micro

        new_updates, inner, acc, micro = jax.lax.cond(apply, step, wait, None)
        return new_updates, AccumulateState(micro, acc, inner, apply, k, mode)

    out = AccumulateTransformation(init_fn, update_fn)
    out.k = k
    return out


@combinator_state(meta=("max_consecutive",))
class SkipState:
    """State of :func:`skip_nonfinite`.

    Attributes:
        inner_state: the wrapped transformation's state (unchanged on skipped steps).
        consecutive: int32 skips in a row; reset to 0 by the next finite step.
        total: int32 skips since the start (saturating).
        skipped: bool, whether the last step was skipped.
        max_consecutive: static; the limit :func:`check_state` enforces (``None``: none).
    """

    inner_state: Any
    consecutive: jax.Array
    total: jax.Array
    skipped: jax.Array
    max_consecutive: int | None = None

    def _metrics(self) -> dict[str, jax.Array]:
        return {
            "skip/consecutive": self.consecutive,
            "skip/total": self.total,
            "skip/skipped": self.skipped,
        }


class NonFiniteError(JoptError):
    """Training produced non-finite gradients more times in a row than allowed."""


def skip_nonfinite(tx: Any, max_consecutive: int | None = None) -> SkipTransformation:
    """Skip steps whose gradients hold a NaN or an Inf.

    Only gradients that ``tx`` reads count: a frozen parameter's gradient (``jopt.freeze``, a
    frozen group) changes no parameter or state, so its values never skip a step, and a train
    step need not compute it (found by dead-code analysis of ``tx.update``, computing nothing).
    On such a step the updates are zero (the parameters stay bitwise unchanged), ``tx``'s
    state is left as it was, and the counters ``consecutive`` and ``total`` grow. A finite
    step resets ``consecutive`` to 0. NaN is never applied, whatever the limit: the limit is
    enforced on the host by :func:`check_state`, which the training loop calls.

    The result is a :class:`SkipTransformation`: an ordinary transformation that
    :func:`update_and_apply` (``jopt run``'s step) applies with the guard around the update and
    ``p + u`` together, which saves a pass over the parameters.

    Args:
        tx: the optimizer to guard.
        max_consecutive: raise (in :func:`check_state`) once more than this many steps in a
            row were skipped; ``None`` for no limit.
    """
    if max_consecutive is not None and (
        isinstance(max_consecutive, bool)
        or not isinstance(max_consecutive, int)
        or max_consecutive < 0
    ):
        raise JoptError(
            f"skip_nonfinite: max_consecutive must be None or an int >= 0, got {max_consecutive!r}"
        )

    def init_fn(params):
        # Two separate zeros: a state that holds one buffer twice cannot be donated to jit.
        return SkipState(
            tx.init(params),
            jnp.zeros([], jnp.int32),
            jnp.zeros([], jnp.int32),
            jnp.array(False),
            max_consecutive,
        )

    def update_fn(updates, state, params=None, **extra_args):
        finite = _finite(tx, updates, state, params, extra_args)

        def step(_):
            return _take(tx, updates, state, params, extra_args)

        def skip(_):
            return _no_step(updates), state.inner_state

        new_updates, inner = jax.lax.cond(finite, step, skip, None)
        return new_updates, _next_state(state, inner, finite)

    out = SkipTransformation(init_fn, update_fn)
    out.inner = tx
    return out


def _finite(tx: Any, updates: Any, state: SkipState, params: Any, extra: dict) -> jax.Array:
    return all_finite(_read_gradients(tx, updates, state.inner_state, params, extra))


def _take(tx: Any, updates: Any, state: SkipState, params: Any, extra: dict) -> tuple:
    new, inner = call_update(tx, updates, state.inner_state, params, **extra)
    return _like(new, updates), inner


def _next_state(state: SkipState, inner: Any, finite: jax.Array) -> SkipState:
    consecutive = jnp.where(finite, 0, safe_increment(state.consecutive)).astype(jnp.int32)
    total = jnp.where(finite, state.total, safe_increment(state.total)).astype(jnp.int32)
    return SkipState(inner, consecutive, total, ~finite, state.max_consecutive)


class SkipTransformation(GradientTransformation):
    """A transformation from :func:`skip_nonfinite`; attribute ``inner`` (the guarded one).

    Its ``update`` returns zero updates on a skipped step, which the caller then applies.
    :meth:`apply` instead puts the guard around the update *and* its application: one
    ``lax.cond`` of ``inner.update`` + ``apply_updates`` against keeping parameters and state.
    The results are the same up to float rounding (a skipped step leaves parameters and state
    bitwise unchanged either way), and the taken branch fuses like an unguarded step: no
    zero updates are written and read back (:func:`update_and_apply` picks it).
    """

    # No __slots__: instances carry ``inner`` in a __dict__.

    def apply(self, updates: Any, state: SkipState, params: Any, **extra: Any) -> tuple:
        """``(new params, new state)``: ``params + inner.update(...)`` where every gradient
        ``inner`` reads is finite, else ``params`` and ``state.inner_state`` unchanged."""
        tx = self.inner
        finite = _finite(tx, updates, state, params, extra)

        def take(_):
            new, inner = _take(tx, updates, state, params, extra)
            return apply_updates(params, new), inner

        def skip(_):
            return params, state.inner_state

        new_params, inner = jax.lax.cond(finite, take, skip, None)
        return new_params, _next_state(state, inner, finite)


def update_and_apply(tx: Any, updates: Any, state: Any, params: Any, **extra: Any) -> tuple:
    """One optimizer step: ``(params + u, new state)`` with ``(u, new state) = tx.update(...)``.

    When ``tx`` is a :func:`skip_nonfinite` guard, the guard goes around the update and its
    application (:meth:`SkipTransformation.apply`), which saves XLA a pass over the
    parameters. The results equal ``apply_updates(params, tx.update(...)[0])`` up to float
    rounding. Train steps (``jopt run``'s and ``jopt.fused.packed_train_step``) call this.
    """
    if isinstance(tx, SkipTransformation) and hasattr(tx, "inner"):
        return tx.apply(updates, state, params, **extra)
    new, state = call_update(tx, updates, state, params, **extra)
    return apply_updates(params, new), state


def check_state(state: Any) -> None:
    """Raise on the host when a guard in ``state`` passed its limit of consecutive skips.

    Call it after each (logged) step or epoch; it reads a few scalars from the device.

    Raises:
        NonFiniteError: (a ``JoptError``) naming the guard, the count and the limit.
    """
    for prefix, node in nodes(state):
        if isinstance(node, SkipState) and node.max_consecutive is not None:
            worst = int(np.max(np.asarray(node.consecutive)))
            if worst > node.max_consecutive:
                where = f" in {prefix.rstrip('/')}" if prefix else ""
                raise NonFiniteError(
                    f"{worst} consecutive steps had non-finite gradients{where} "
                    f"(limit max_consecutive={node.max_consecutive}); lower the learning rate, "
                    "clip gradients or check the data"
                )
