"""Parameter groups by path rules: :func:`groups`, :func:`coverage`, :func:`describe`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.combinators._hparams import HparamsTransformation
from jopt.combinators._paths import compile_pattern, leaf_paths
from jopt.combinators._walk import combinator_state
from jopt.core import GradientTransformation, JoptError, call_update, leaf_labels

FREEZE = "freeze"
DEFAULT = "default"


@combinator_state(prefix_field="states")
class GroupsState:
    """State of :func:`groups`.

    Attributes:
        states: ``{group: state}`` for every group that trains. A frozen group has no entry,
            and each group's state covers only its own leaves (the others are ``None``).
    """

    states: dict


class GroupsTransformation(GradientTransformation):
    """A transformation from :func:`groups`.

    Attributes (besides ``init``/``update``): ``rules`` (a list of
    ``(group, pattern, transform or "freeze")``), ``default`` (a transform or ``None``) and
    :meth:`assign`.
    """

    # No __slots__: instances carry the attributes above in a __dict__.

    def assign(self, tree: Any) -> list[str]:
        """The group of every leaf of ``tree``, in flattening order.

        Raises:
            JoptError: when a leaf matches no rule and there is no default, or matches more
                than one rule; the message lists those paths.
        """

        # Through ``leaf_labels``: on packed buffers each buffer gets its leaves' one group.
        def label_tree(leaves_tree):
            labels = self._assign_leaves(leaves_tree)
            return jax.tree.structure(leaves_tree).unflatten(labels)

        return jax.tree.leaves(leaf_labels(tree, label_tree))

    def _assign_leaves(self, tree: Any) -> list[str]:
        paths = leaf_paths(tree)
        compiled = [(g, compile_pattern(p)) for g, p, _ in self.rules]
        labels, unmatched, doubly = [], [], []
        for path in paths:
            hits = [g for g, rx in compiled if rx.match(path)]
            if len(hits) > 1:
                doubly.append(f"{path} ({' and '.join(hits)})")
            elif not hits and self.default is None:
                unmatched.append(path)
            labels.append(hits[0] if hits else DEFAULT)
        if unmatched:
            raise JoptError(
                f"groups: {len(unmatched)} parameter(s) match no rule and there is no default: "
                f"{', '.join(unmatched)}; add a rule or pass default=..."
            )
        if doubly:
            raise JoptError(
                f"groups: parameter(s) match more than one rule: {', '.join(doubly)}; "
                "each parameter must match exactly one rule"
            )
        return labels

    def transforms(self) -> dict[str, Any]:
        """``{group: transform or "freeze"}``, the default group last."""
        out = {g: t for g, _, t in self.rules}
        if self.default is not None:
            out[DEFAULT] = self.default
        return out


def _mask(tree: Any, labels: list[str], group: str) -> Any:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef.unflatten(
        [x if g == group else None for x, g in zip(leaves, labels, strict=True)]
    )


def _rule_from_mapping(i: int, rule: Mapping[str, Any]) -> tuple[str, str, Any]:
    # The config form: {pattern, name?, freeze?: true, <overrides>...}.
    rule = dict(rule)
    if "pattern" not in rule:
        raise JoptError(f"groups: rule {i} needs a 'pattern' key, got keys {sorted(rule)}")
    pattern, name = rule.pop("pattern"), rule.pop("name", f"rule{i}")
    if rule.pop("freeze", False):
        if rule:
            raise JoptError(f"groups: rule {name!r} freezes, so it takes no {sorted(rule)}")
        return name, pattern, FREEZE
    return name, pattern, rule


def _normalize_rules(rules: Any) -> list[tuple[str, str, Any]]:
    if isinstance(rules, Mapping):
        rules = [(name, *spec) for name, spec in rules.items()]
    out = []
    for i, rule in enumerate(rules):
        if isinstance(rule, Mapping):
            rule = _rule_from_mapping(i, rule)
        if not isinstance(rule, tuple | list) or len(rule) not in (2, 3):
            raise JoptError(
                f"groups: rule {i} must be (pattern, spec) or (name, pattern, spec), got {rule!r}"
            )
        name, pattern, spec = rule if len(rule) == 3 else (f"rule{i}", *rule)
        if not isinstance(name, str) or not name or "/" in name or name == DEFAULT:
            raise JoptError(
                f"groups: group name {name!r} must be a non-empty string without '/', "
                f"other than {DEFAULT!r}"
            )
        compile_pattern(pattern)
        out.append((name, pattern, spec))
    names = [n for n, _, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise JoptError(f"groups: duplicate group names {dupes}; each group needs its own name")
    return out


def groups(
    rules: Sequence[tuple] | Mapping[str, tuple], default: Any = None
) -> GroupsTransformation:
    """Optimize parameter groups chosen by path rules, each its own way.

    Each rule is ``(pattern, spec)`` or ``(name, pattern, spec)``, or (the form a config file
    gives) a dict ``{"pattern": ..., "name": ..., "freeze": True}`` or
    ``{"pattern": ..., "lr_mult": 0.1, ...}`` whose other keys are overrides; a mapping
    ``{name: (pattern, spec)}`` works too. Unnamed rules are called ``rule0``, ``rule1``...
    A pattern is a glob over ``/``-joined parameter paths (``*``, ``**``, ``|``; see
    :mod:`jopt.combinators._paths`). The spec is

    - a dict of overrides of ``default``'s arguments, for instance ``{"weight_decay": 0.0}``,
      or multipliers such as ``{"lr_mult": 0.1}`` (``default`` must come from
      :func:`with_hparams`, so that it can be rebuilt);
    - another transformation; or
    - ``"freeze"``: the parameters get exactly zero updates and the group has no state at all.

    Every parameter must match exactly one rule, or none and then fall to ``default``.
    Hyperparameter names inside a group are ``groups/<group>/<name>/<argument>``; the default
    group is called ``default``.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> base = jopt.with_hparams(jopt.adam)(1e-3)
        >>> tx = jopt.groups([("enc", "encoder/**", {"lr_mult": 0.1}),
        ...                   ("emb", "embed/**", "freeze")], default=base)
        >>> params = {"encoder": {"w": jnp.ones(2)}, "embed": {"w": jnp.ones(2)},
        ...           "head": jnp.ones(2)}
        >>> state = tx.init(params)
        >>> sorted(jopt.get_hparams(state))[0]
        'groups/default/adam/b1'
    """
    normalized = []
    for name, pattern, spec in _normalize_rules(rules):
        if isinstance(spec, str):
            if spec != FREEZE:
                raise JoptError(f"groups: rule {name!r} spec {spec!r} is unknown; use 'freeze'")
        elif isinstance(spec, Mapping):
            if not isinstance(default, HparamsTransformation):
                raise JoptError(
                    f"groups: rule {name!r} overrides arguments, so default must be built with "
                    "jopt.with_hparams(factory)(...)"
                )
            spec = default.with_overrides(**spec)
        elif not (hasattr(spec, "init") and hasattr(spec, "update")):
            raise JoptError(
                f"groups: rule {name!r} spec must be a dict of overrides, a transformation or "
                f"'freeze', got {type(spec).__name__}"
            )
        normalized.append((name, pattern, spec))

    def trained(labels: list[str]) -> dict[str, Any]:
        return {g: t for g, t in tx.transforms().items() if t != FREEZE}

    def init_fn(params):
        labels = tx.assign(params)
        return GroupsState(
            {g: t.init(_mask(params, labels, g)) for g, t in trained(labels).items()}
        )

    def update_fn(updates, state, params=None, **extra_args):
        labels = tx.assign(updates)
        leaves, treedef = jax.tree.flatten(updates)
        # -0.0 is the additive identity for every float, -0.0 included: frozen leaves are
        # bitwise unchanged by apply_updates (a +0.0 would turn -0.0 into +0.0).
        out = [jnp.full(jnp.shape(u), -0.0, jnp.asarray(u).dtype) for u in leaves]
        new_states = {}
        for g, t in trained(labels).items():
            if g not in labels:
                # A group that covers no parameter makes no step (and its transform is not
                # asked to map over an empty tree).
                new_states[g] = state.states[g]
                continue
            sub_params = None if params is None else _mask(params, labels, g)
            sub_updates, new_states[g] = call_update(
                t, _mask(updates, labels, g), state.states[g], sub_params, **extra_args
            )
            # Up to the updates' structure: the other groups' leaves are None there, and None
            # nodes of the parameters themselves are not leaves (so they do not shift labels).
            sub_leaves = treedef.flatten_up_to(sub_updates)
            for i, (u, lab) in enumerate(zip(sub_leaves, labels, strict=True)):
                if lab == g:
                    out[i] = u
        return treedef.unflatten(out), GroupsState(new_states)

    tx = GroupsTransformation(init_fn, update_fn)
    tx.rules, tx.default = normalized, default
    return tx


def _nbytes(tree: Any) -> int:
    return int(
        sum(np.prod(x.shape, dtype=np.int64) * x.dtype.itemsize for x in jax.tree.leaves(tree))
    )


def coverage(tx: Any, params: Any) -> list[dict[str, Any]]:
    """Rows ``{group, leaves, params, state_bytes}``: what each group covers and costs.

    State bytes are computed with ``jax.eval_shape`` (nothing is allocated). A transform that
    is not from :func:`groups` is one group called ``all``.
    """
    if not isinstance(tx, GroupsTransformation):
        shapes = jax.eval_shape(tx.init, params)
        leaves = jax.tree.leaves(params)
        count = int(sum(np.prod(np.shape(x), dtype=np.int64) for x in leaves))
        return [
            {"group": "all", "leaves": len(leaves), "params": count, "state_bytes": _nbytes(shapes)}
        ]
    labels = tx.assign(params)
    leaves = jax.tree.leaves(params)
    rows = []
    for g, t in tx.transforms().items():
        mine = [x for x, lab in zip(leaves, labels, strict=True) if lab == g]
        state_bytes = (
            0 if t == FREEZE else _nbytes(jax.eval_shape(t.init, _mask(params, labels, g)))
        )
        rows.append(
            {
                "group": g + (" (frozen)" if t == FREEZE else ""),
                "leaves": len(mine),
                "params": int(sum(np.prod(np.shape(x), dtype=np.int64) for x in mine)),
                "state_bytes": state_bytes,
            }
        )
    return rows


def describe(tx: Any, params: Any) -> str:
    """Print and return a coverage table of ``tx`` over ``params`` (see :func:`coverage`)."""
    rows = coverage(tx, params)
    total = {
        "group": "total",
        **{k: sum(r[k] for r in rows) for k in ("leaves", "params", "state_bytes")},
    }
    header = ("group", "leaves", "params", "state_bytes")
    table = [header] + [tuple(str(r[k]) for k in header) for r in [*rows, total]]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text)
    return text
