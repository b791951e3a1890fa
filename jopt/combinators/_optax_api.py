"""optax's wrapper names, spelled with jopt's combinators.

``apply_if_finite`` is :func:`jopt.skip_nonfinite`, ``MultiSteps`` is :func:`jopt.accumulate`,
and ``multi_transform``/``partition``/``freeze`` are :func:`jopt.groups` with the group of
each leaf given by a label tree instead of path patterns. Each takes optax's signature; what
jopt does differently is said in each docstring, and what it cannot do is refused with a
:class:`jopt.JoptError`. (``masked`` is a building block: :func:`jopt.masked`.)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jopt.combinators._groups import FREEZE, GroupsTransformation, groups
from jopt.combinators._robust import accumulate, skip_nonfinite
from jopt.core import GradientTransformation, JoptError, identity


def apply_if_finite(inner: Any, max_consecutive_errors: int) -> GradientTransformation:
    """Skip steps with non-finite gradients: optax's name for :func:`jopt.skip_nonfinite`.

    On a finite step this is ``inner``; on a step with a NaN or an Inf the updates are zero and
    ``inner``'s state is kept. One difference from ``optax.apply_if_finite``: after more than
    ``max_consecutive_errors`` bad steps in a row optax applies the non-finite update, while
    jopt never applies it and :func:`jopt.check_state` raises instead (the training loop
    calls it). The state is a :class:`jopt.SkipState`, not optax's ``ApplyIfFiniteState``.
    """
    return skip_nonfinite(inner, max_consecutive=max_consecutive_errors)


class MultiSteps:
    """Gradient accumulation with optax's ``MultiSteps`` interface, on :func:`jopt.accumulate`.

    ``MultiSteps(opt, k).gradient_transformation()`` steps ``opt`` every ``k`` calls, with the
    mean (``use_grad_mean=True``) or the sum of the ``k`` gradients, and zero updates in
    between; ``init``/``update``/``has_updated`` are also available on the object, as in
    optax. Only an integer ``every_k_schedule`` and no ``should_skip_update_fn`` are supported
    (both are refused otherwise); to skip non-finite steps wrap ``opt`` in
    :func:`apply_if_finite`. The state is a :class:`jopt.AccumulateState`.
    """

    def __init__(
        self,
        opt: Any,
        every_k_schedule: int | Callable[[jax.Array], jax.Array],
        use_grad_mean: bool = True,
        should_skip_update_fn: Callable[..., Any] | None = None,
        accumulator_dtype: Any = jnp.float32,
    ) -> None:
        if callable(every_k_schedule):
            raise JoptError("MultiSteps: every_k_schedule must be an int in jopt (no schedule)")
        if should_skip_update_fn is not None:
            raise JoptError(
                "MultiSteps: should_skip_update_fn is not supported; wrap the optimizer in "
                "jopt.apply_if_finite / jopt.skip_nonfinite instead"
            )
        mode = "mean" if use_grad_mean else "sum"
        self._tx = accumulate(opt, every_k_schedule, mode, accumulator_dtype)
        self.inner_opt = opt

    def gradient_transformation(self) -> GradientTransformation:
        """The accumulating transformation (``init``, ``update``)."""
        return self._tx

    def init(self, params: Any) -> Any:
        return self._tx.init(params)

    def update(self, updates: Any, state: Any, params: Any = None, **extra_args: Any):
        return self._tx.update(updates, state, params, **extra_args)

    def has_updated(self, state: Any) -> jax.Array:
        """Whether the last call to ``update`` made a real step of the inner optimizer."""
        return state.applied


def _labels_of(param_labels: Any, tree: Any) -> list[str]:
    labels = param_labels(tree) if callable(param_labels) else param_labels
    try:
        per_leaf = jax.tree.map(lambda lab, sub: jax.tree.map(lambda _: lab, sub), labels, tree)
    except (ValueError, TypeError) as e:
        raise JoptError(
            f"param_labels must be a tree of labels shaped like the params (or a prefix): {e}"
        ) from None
    return [str(x) for x in jax.tree.leaves(per_leaf)]


def _group_name(label: Hashable) -> str:
    name = str(label)
    if not name or "/" in name or name == "default":
        raise JoptError(
            f"multi_transform: label {label!r} must print as a non-empty name without '/', "
            "other than 'default'"
        )
    return name


def _by_labels(specs: Mapping[Hashable, Any], param_labels: Any) -> GroupsTransformation:
    names = [_group_name(k) for k in specs]
    if len(set(names)) != len(names):
        raise JoptError(f"multi_transform: labels {list(specs)} are not distinct as strings")
    # The patterns are never used: assign() below reads the labels instead.
    rules = [(n, "__by_label__", spec) for n, spec in zip(names, specs.values(), strict=True)]
    tx = groups(rules)

    def assign(tree: Any) -> list[str]:
        labels = _labels_of(param_labels, tree)
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise JoptError(
                f"multi_transform: label(s) {unknown} have no transform; known: {sorted(names)}"
            )
        return labels

    tx.assign = assign
    return tx


def multi_transform(
    transforms: Mapping[Hashable, Any],
    param_labels: Any | Callable[[Any], Any],
    *,
    mask_compatible_extra_args: bool = False,
) -> GroupsTransformation:
    """One transformation per label (``optax.multi_transform``), on :func:`jopt.groups`.

    ``param_labels`` is a tree of labels with the structure of the parameters (or a prefix),
    or a function of the params returning one; ``transforms`` maps each label to a
    transformation. Labels are used as group names (``str(label)``), so hyperparameter names
    read ``groups/<label>/...``. The state is a :class:`jopt.GroupsState`. Extra arguments
    are passed unmasked (``mask_compatible_extra_args=True`` is refused).
    """
    if mask_compatible_extra_args:
        raise JoptError("multi_transform: mask_compatible_extra_args=True is not supported")
    return _by_labels(dict(transforms), param_labels)


def partition(
    transforms: Mapping[Hashable, Any],
    param_labels: Any | Callable[[Any], Any],
    *,
    mask_compatible_extra_args: bool = False,
) -> GroupsTransformation:
    """optax's newer name for :func:`multi_transform` (same arguments, same result)."""
    return multi_transform(
        transforms, param_labels, mask_compatible_extra_args=mask_compatible_extra_args
    )


def freeze(mask: Any) -> GroupsTransformation:
    """Zero the updates of the leaves where ``mask`` is ``True`` (``optax.freeze``).

    ``mask`` is a bool, a tree of bools shaped like the params (or a prefix), or a function of
    the params. The frozen leaves get exactly zero updates (``-0.0``, so the parameters stay
    bitwise) and carry no state; the others pass through. Chain it after the optimizer.
    """

    def labels(tree):
        m = mask(tree) if callable(mask) else mask
        return jax.tree.map(lambda f: "frozen" if bool(f) else "trainable", m)

    return _by_labels({"frozen": FREEZE, "trainable": identity()}, labels)
