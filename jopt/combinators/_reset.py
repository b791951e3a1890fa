"""Re-initializing part of an optimizer state: :func:`reset`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jopt.combinators._groups import GroupsState
from jopt.combinators._paths import compile_pattern, key_name, path_str
from jopt.core import JoptError

# Fields that re-initialize to the parameters, not to zero: they need ``init_state``.
_PARAM_COPIES = frozenset({"ema", "slow"})


def _group_prefixes(state: Any) -> dict[str, tuple]:
    """``{group name: key path of its substate}`` for every ``GroupsState`` in ``state``."""
    found = {}
    flat = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: isinstance(x, GroupsState)
    )[0]
    for path, node in flat:
        if isinstance(node, GroupsState):
            for g, sub in node.states.items():
                key = (*path, jax.tree_util.GetAttrKey("states"), jax.tree_util.DictKey(g))
                found[g] = key
                found[f"groups/{g}"] = key
                del sub
    return found


def reset(state: Any, group_or_path: str, init_state: Any = None) -> Any:
    """Re-initialize the part of ``state`` that belongs to a parameter group or to some paths.

    ``group_or_path`` is a group name of a :func:`groups` transform (``"backbone"`` or
    ``"groups/backbone"``: that group's whole state), or else a path pattern (``"encoder/**"``:
    the per-parameter slots, such as Adam's moments, of the matching parameters). Counters of
    the group are reset too; hyperparameters never are.

    Without ``init_state`` the chosen leaves become zeros, which is how every moment,
    accumulator and counter starts. Slots that start as a copy of the parameters (``ema``,
    lookahead's ``slow``) need ``init_state=tx.init(params)``, whose leaves are then copied.

    Raises:
        JoptError: when nothing matches, or a parameter copy is chosen without ``init_state``.
    """
    if not isinstance(group_or_path, str) or not group_or_path:
        raise JoptError(f"reset: expected a group name or a path pattern, got {group_or_path!r}")
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(state)
    fresh = None
    if init_state is not None:
        fresh_leaves, fresh_def = jax.tree.flatten(init_state)
        if fresh_def != treedef:
            raise JoptError("reset: init_state does not have the structure of state")
        fresh = fresh_leaves
    groups = _group_prefixes(state)
    if group_or_path in groups:
        prefix = groups[group_or_path]

        def chosen(path):
            return path[: len(prefix)] == prefix
    else:
        regex = compile_pattern(group_or_path.lstrip("/"))

        def chosen(path):
            return regex.match(path_str(path)) is not None

    out, hits = [], 0
    for i, (path, leaf) in enumerate(leaves_with_path):
        names = {key_name(k) for k in path if isinstance(k, jax.tree_util.GetAttrKey)}
        if "hparams" in names or not chosen(path):
            out.append(leaf)
            continue
        hits += 1
        if fresh is not None:
            out.append(fresh[i])
        elif names & _PARAM_COPIES:
            raise JoptError(
                f"reset: {path_str(path)} starts as a copy of the parameters; "
                "pass init_state=tx.init(params)"
            )
        else:
            out.append(jnp.zeros_like(leaf))
    if not hits:
        valid = sorted(g for g in groups if not g.startswith("groups/"))
        raise JoptError(
            f"reset: {group_or_path!r} matches no group and no state leaf"
            + (f"; groups: {', '.join(valid)}" if valid else "")
        )
    return treedef.unflatten(out)
