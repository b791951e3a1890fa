"""The metrics channel: :func:`with_norms`, :func:`tap` and :func:`metrics`.

Combinators write scalar diagnostics into their own state, so a chain reports them without
being split and without side effects. ``metrics(state)`` collects them into one flat dict of
scalar arrays; it is a pure function of the state, so it runs inside ``jit`` and ``vmap``.

Keys (``groups/<group>/`` in front inside parameter groups):

- ``grad_norm``, ``update_norm``, ``param_norm``, ``update_ratio`` from :func:`with_norms`;
- ``<name>`` from each :func:`tap` (for instance the norm after clipping);
- ``<opt>/learning_rate`` from :func:`with_hparams` (the effective rate: schedule and group
  multiplier applied);
- ``skip/...`` from :func:`skip_nonfinite`, ``accumulate/...`` from :func:`accumulate`,
  ``lookahead/synced`` from :func:`with_lookahead`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jopt.combinators._hparams import get_hparams
from jopt.combinators._walk import UniqueNames, combinator_state, nodes
from jopt.core import GradientTransformation, JoptError, call_update, global_norm


@combinator_state()
class NormsState:
    """State of :func:`with_norms`.

    Attributes:
        inner_state: the wrapped transformation's state.
        grad_norm: global L2 norm of the incoming gradients at the last step.
        update_norm: global L2 norm of the outgoing updates.
        param_norm: global L2 norm of the parameters before the step (0 without params).
        update_ratio: ``update_norm / param_norm`` (0 when ``param_norm`` is 0).
    """

    inner_state: Any
    grad_norm: jax.Array
    update_norm: jax.Array
    param_norm: jax.Array
    update_ratio: jax.Array

    def _metrics(self) -> dict[str, jax.Array]:
        return {
            "grad_norm": self.grad_norm,
            "update_norm": self.update_norm,
            "param_norm": self.param_norm,
            "update_ratio": self.update_ratio,
        }


def _zero() -> jax.Array:
    return jnp.zeros([], jnp.float32)


def with_norms(tx: Any) -> GradientTransformation:
    """Record gradient, update and parameter norms of ``tx``'s steps in the state.

    .. math::

        \\text{update\\_ratio} = \\lVert u_t \\rVert_2 / \\lVert \\theta_{t-1} \\rVert_2

    Read them with :func:`metrics`. The updates are those of ``tx``, unchanged. (Not
    ``optax.monitor``, which takes a dict of measures.)

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.with_norms(jopt.sgd(0.1))
        >>> params = {"w": jnp.ones(4)}
        >>> _, state = tx.update({"w": jnp.ones(4)}, tx.init(params), params)
        >>> sorted(jopt.metrics(state))
        ['grad_norm', 'param_norm', 'update_norm', 'update_ratio']
    """

    def init_fn(params):
        return NormsState(tx.init(params), _zero(), _zero(), _zero(), _zero())

    def update_fn(updates, state, params=None, **extra_args):
        grad_norm = global_norm(updates).astype(jnp.float32)
        updates, inner = call_update(tx, updates, state.inner_state, params, **extra_args)
        update_norm = global_norm(updates).astype(jnp.float32)
        param_norm = _zero() if params is None else global_norm(params).astype(jnp.float32)
        safe = jnp.where(param_norm > 0, param_norm, 1.0)
        ratio = jnp.where(param_norm > 0, update_norm / safe, 0.0)
        return updates, NormsState(inner, grad_norm, update_norm, param_norm, ratio)

    return GradientTransformation(init_fn, update_fn)


@combinator_state(meta=("name",))
class TapState:
    """State of :func:`tap`.

    Attributes:
        norm: global L2 norm of the updates that passed through at the last step.
        name: static; the metric's key.
    """

    norm: jax.Array
    name: str = "tap"

    def _metrics(self) -> dict[str, jax.Array]:
        return {self.name: self.norm}


def tap(name: str) -> GradientTransformation:
    """An identity transformation that records the global norm of what passes through.

    Put it anywhere in a chain: ``chain(tap("grad_norm"), clip_by_global_norm(1.0),
    tap("clipped_grad_norm"), adam(1e-3))`` reports the norm before and after clipping.
    """
    if not isinstance(name, str) or not name:
        raise JoptError(f"tap: name must be a non-empty string, got {name!r}")

    def init_fn(params):
        del params
        return TapState(_zero(), name)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, TapState(global_norm(updates).astype(jnp.float32), state.name)

    return GradientTransformation(init_fn, update_fn)


def metrics(state: Any) -> dict[str, jax.Array]:
    """All scalar diagnostics the combinators in ``state`` recorded; ``{}`` for a plain state.

    Keys are listed in the module docstring; a key that would repeat gets a ``_2`` suffix.
    """
    out = {k: v for k, v in get_hparams(state).items() if k.endswith("/learning_rate")}
    unique = UniqueNames()
    for key in out:
        unique("", key)
    for prefix, node in nodes(state):
        local = getattr(node, "_metrics", None)
        if local is None:
            continue
        for key, value in local().items():
            out[prefix + unique(prefix, key)] = value
    return out
