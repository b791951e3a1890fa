"""Sequential composition: ``chain`` and ``named_chain``."""

from __future__ import annotations

from typing import Any

import optax

from jopt.core._base import GradientTransformation, OptState, Params, Updates
from jopt.core.errors import JoptError


def call_update(
    tx: Any, updates: Updates, state: OptState, params: Params | None, **extra_args: Any
) -> tuple[Updates, OptState]:
    """Call ``tx.update``, forwarding extra arguments only to transforms that accept them.

    jopt transforms (and optax ``GradientTransformationExtraArgs``) take ``**extra_args``;
    a plain optax ``GradientTransformation`` is called with three arguments.
    """
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx.update(updates, state, params, **extra_args)
    return tx.update(updates, state, params)


def _check(tx: Any) -> None:
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise JoptError(f"expected a gradient transformation with init/update, got {tx!r}")


def chain(*transforms: Any) -> GradientTransformation:
    """Apply ``transforms`` one after the other; the state is the tuple of their states.

    Accepts jopt and optax transforms alike. The state layout (a tuple) matches ``optax.chain``.

    Example:
        >>> import jopt
        >>> tx = jopt.chain(jopt.clip_by_global_norm(1.0), jopt.scale_by_adam(), jopt.scale(-1e-3))
    """
    for t in transforms:
        _check(t)

    def init_fn(params):
        return tuple(t.init(params) for t in transforms)

    def update_fn(updates, state, params=None, **extra_args):
        if len(state) != len(transforms):
            raise ValueError(
                f"chain of {len(transforms)} transforms got a state of length {len(state)}"
            )
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            updates, s = call_update(t, updates, s, params, **extra_args)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init_fn, update_fn)


def named_chain(*named_transforms: tuple[str, Any]) -> GradientTransformation:
    """Like :func:`chain`, but the state is a dict keyed by the given unique names.

    ``state["clip"]`` then addresses the state of the transform named ``"clip"``.
    """
    names = [n for n, _ in named_transforms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise JoptError(f"named_chain: duplicate names {dupes}; each name must be unique")
    for name, t in named_transforms:
        if not isinstance(name, str) or not name:
            raise JoptError(f"named_chain: names must be non-empty strings, got {name!r}")
        _check(t)

    def init_fn(params):
        return {name: t.init(params) for name, t in named_transforms}

    def update_fn(updates, state, params=None, **extra_args):
        new_state = {}
        for name, t in named_transforms:
            updates, new_state[name] = call_update(t, updates, state[name], params, **extra_args)
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)
