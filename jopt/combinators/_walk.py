"""Walking an optimizer state to find the combinators' own nodes.

Combinator states (hyperparameters, groups, guards, monitors...) are dataclass pytrees marked
with :func:`combinator_state`. Readers such as ``get_hparams``, ``metrics`` and ``reset`` find
them anywhere in a state (inside chains, tuples, dicts, optax states) with :func:`visit`, which
also tracks the name prefix: entering parameter group ``g`` adds ``groups/g/``.

Names are unique by construction: the walk order is fixed by the state's structure, and a name
seen twice gets a ``_2``, ``_3``... suffix (:class:`UniqueNames`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import jax

T = TypeVar("T")
_KINDS: tuple[type, ...] = ()


def combinator_state(*, meta: tuple[str, ...] = (), prefix_field: str | None = None):
    """Register a dataclass as a pytree and as a node :func:`visit` stops at.

    Args:
        meta: static (hashable, non-array) fields, part of the jit cache key.
        prefix_field: a field holding a dict ``{group: substate}``; the walk enters each
            substate with the prefix ``groups/<group>/``.
    """

    def wrap(cls: type[T]) -> type[T]:
        global _KINDS
        cls = dataclasses.dataclass(frozen=True)(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        data = [f for f in fields if f not in meta]
        jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(meta))
        cls._jopt_data_fields = tuple(data)
        cls._jopt_prefix_field = prefix_field
        _KINDS = (*_KINDS, cls)
        return cls

    return wrap


def is_node(x: Any) -> bool:
    """Whether ``x`` is a combinator state node."""
    return isinstance(x, _KINDS)


def visit(state: Any, fn: Callable[[Any, str], Any], prefix: str = "") -> Any:
    """Rebuild ``state``, replacing each combinator node ``n`` by ``fn(n, prefix)`` (pre-order).

    The children of the node ``fn`` returns are visited in turn. ``fn`` may return the node
    unchanged to only read it.
    """
    if is_node(state):
        node = fn(state, prefix)
        changes = {}
        for name in node._jopt_data_fields:
            child = getattr(node, name)
            if name == node._jopt_prefix_field:
                changes[name] = {g: visit(s, fn, f"{prefix}groups/{g}/") for g, s in child.items()}
            else:
                changes[name] = visit(child, fn, prefix)
        return dataclasses.replace(node, **changes)
    if not jax.tree.leaves(state, is_leaf=is_node):
        return state
    return jax.tree.map(lambda x: visit(x, fn, prefix) if is_node(x) else x, state, is_leaf=is_node)


def nodes(state: Any) -> list[tuple[str, Any]]:
    """Every combinator node in ``state`` with its prefix, in walk order."""
    found: list[tuple[str, Any]] = []

    def record(node, prefix):
        found.append((prefix, node))
        return node

    visit(state, record)
    return found


class UniqueNames:
    """Hands out names, adding ``_2``, ``_3``... to a name already handed out."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, prefix: str, name: str) -> str:
        candidate, i = name, 1
        while prefix + candidate in self._seen:
            i += 1
            candidate = f"{name}_{i}"
        self._seen.add(prefix + candidate)
        return candidate
