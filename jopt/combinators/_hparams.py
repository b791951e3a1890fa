"""Hyperparameters as state: :func:`with_hparams`, :func:`get_hparams`, :func:`set_hparams`.

``with_hparams(factory)(**kwargs)`` builds ``factory(**kwargs)`` but keeps every numeric
hyperparameter (learning rate, betas, eps, weight decay...) as a float32 scalar *in the state*.
``update`` calls the factory again with the state's values, so changing a value between steps,
scheduling it, or ``jax.vmap``-ing over it never recompiles. (The same idea as
``optax.inject_hyperparams``; the difference is the naming: each hyperparameter has one unique
readable name such as ``adam/learning_rate`` or ``groups/backbone/adam/learning_rate``.)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.combinators._walk import UniqueNames, combinator_state, visit
from jopt.core import GradientTransformation, JoptError, call_update, safe_increment

try:  # A weakly-typed float32 promotes like a Python float (see ``_weak``).
    from jax._src.lax.lax import _convert_element_type as _convert
except ImportError:  # pragma: no cover - a future jax without it loses only bf16 strictness
    _convert = None


def _weak(x: Any) -> jax.Array:
    """``x`` as a weakly-typed float32 scalar array.

    Why: the factories were written for Python-float hyperparameters, which are weakly typed,
    so ``lr * u`` keeps ``u``'s dtype (bfloat16 stays bfloat16, and strict dtype promotion
    accepts it). A strong float32 array would promote instead. Keeping every stored value
    weak also keeps the jit cache key stable: weak and strong types are different keys.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if _convert is None:
        return x.astype(jnp.float32)
    return _convert(x, jnp.dtype(jnp.float32), weak_type=True)


def _is_weak(x: Any) -> bool:
    aval = getattr(x, "aval", None)  # tracers and arrays carry the flag on their aval
    return bool(getattr(aval, "weak_type", getattr(x, "weak_type", False)))


def _as_stored(value: Any, stored: jax.Array) -> jax.Array:
    """``value`` with the type of the stored scalar it replaces (weak or strong float32).

    States restored from a checkpoint may hold strong scalars; keeping whatever is stored
    keeps ``lax.scan`` carries and jit cache keys unchanged.
    """
    if _is_weak(stored):
        return _weak(value)
    return jnp.asarray(value).astype(jnp.asarray(stored).dtype)


@combinator_state(meta=("name", "scheduled"))
class HparamsState:
    """State of a :func:`with_hparams` transformation.

    Attributes:
        count: int32 number of updates so far (saturating); the input of the schedules.
        hparams: ``{argument: float32 scalar}``, the values the last update used (or will use).
        inner_state: the state of the wrapped optimizer.
        name: static; the readable prefix of the names (``adam`` in ``adam/learning_rate``).
        scheduled: static; the arguments driven by a schedule (recomputed every step).
    """

    count: jax.Array
    hparams: dict
    inner_state: Any
    name: str = ""
    scheduled: tuple = ()


def _is_hparam_value(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float | np.floating):
        return True
    if isinstance(value, jax.Array | np.ndarray):
        return jnp.issubdtype(value.dtype, jnp.floating) and np.ndim(value) == 0
    return False


def _is_schedule(key: str, value: Any) -> bool:
    # Types (``jnp.bfloat16``) and masks are callables that are not schedules.
    return (
        callable(value)
        and not isinstance(value, type | np.dtype)
        and "mask" not in key
        and not isinstance(value, jax.Array)
    )


class HparamsTransformation(GradientTransformation):
    """A transformation from :func:`with_hparams`; it remembers how it was built.

    Attributes (besides ``init``/``update``): ``factory``, ``name``, ``kwargs`` (every argument
    of the factory, defaults included), ``hparam_names`` (those kept in the state).
    """

    # No __slots__: instances carry the attributes above in a __dict__.

    def with_overrides(self, name: str | None = None, **overrides: Any) -> HparamsTransformation:
        """The same optimizer with some arguments replaced.

        ``<arg>_mult=x`` multiplies argument ``arg`` (a value or a schedule) by ``x``;
        ``lr_mult`` is short for ``learning_rate_mult``.
        """
        kwargs = dict(self.kwargs)
        for key, value in overrides.items():
            if key == "lr_mult":
                key = "learning_rate_mult"
            if key.endswith("_mult") and key[: -len("_mult")] in self.hparam_names:
                base_key = key[: -len("_mult")]
                base = kwargs[base_key]
                if callable(base):
                    kwargs[base_key] = lambda c, f=base, m=value: m * f(c)
                else:
                    kwargs[base_key] = float(value) * base
            elif key in kwargs:
                kwargs[key] = value
            else:
                allowed = sorted(
                    [*kwargs, *(f"{h}_mult" for h in self.hparam_names)]
                    + (["lr_mult"] if "learning_rate" in self.hparam_names else [])
                )
                raise JoptError(
                    f"{self.name}: unknown override {key!r}; allowed: {', '.join(allowed)}"
                )
        return with_hparams(self.factory, name=name or self.name)(**kwargs)


def with_hparams(
    factory: Callable[..., Any], name: str | None = None, *, static: tuple[str, ...] = ()
) -> Callable[..., HparamsTransformation]:
    """Wrap an optimizer factory so that its numeric hyperparameters live in the state.

    Every float argument (given or defaulted) becomes a float32 scalar in the state under
    ``<name>/<argument>``; every callable argument (other than types and masks) is a
    schedule ``count -> value`` evaluated at each step, its current value readable under
    the same kind of name. Other arguments (ints, bools, None, dtypes, names in ``static``)
    are fixed at construction.

    Args:
        factory: returns a gradient transformation; it must accept array (traced) scalars
            for the hyperparameters, as jopt's and optax's factories do.
        name: the prefix of the names; by default the factory's ``__name__`` (``opt`` for a
            lambda).
        static: argument names to keep fixed even though they are floats or callables.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.with_hparams(jopt.adam)(learning_rate=1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
        >>> state = jopt.set_hparams(state, **{"adam/learning_rate": 3e-4})
        >>> float(jopt.get_hparams(state)["adam/learning_rate"])  # doctest: +ELLIPSIS
        0.0003...
    """
    if name is None:
        # functools.partial -> its function's name; lambdas and other callables -> "opt".
        base = getattr(factory, "func", factory)
        name = getattr(base, "__name__", "opt")
        name = name if name.isidentifier() else "opt"
    if not isinstance(name, str) or not name or "/" in name:
        raise JoptError(f"with_hparams: name must be a non-empty string without '/', got {name!r}")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None

    def build(*args: Any, **kwargs: Any) -> HparamsTransformation:
        if signature is not None:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as e:
                raise JoptError(f"{name}: {e}") from None
            bound.apply_defaults()
            all_kwargs = dict(bound.arguments)
            for p in signature.parameters.values():
                if p.kind is p.VAR_KEYWORD:
                    all_kwargs.update(all_kwargs.pop(p.name, {}))
                elif p.kind is p.VAR_POSITIONAL:
                    all_kwargs.pop(p.name, None)
        else:
            if args:
                raise JoptError(f"{name}: pass the arguments by keyword")
            all_kwargs = dict(kwargs)
        values, schedules, fixed = {}, {}, {}
        for key, value in all_kwargs.items():
            if key in static:
                fixed[key] = value
            elif _is_hparam_value(value):
                values[key] = value
            elif _is_schedule(key, value):
                schedules[key] = value
            else:
                fixed[key] = value
        scheduled = tuple(sorted(schedules))

        def current(count: jax.Array) -> dict[str, jax.Array]:
            out = {k: _weak(v) for k, v in values.items()}
            out.update({k: _weak(f(count)) for k, f in schedules.items()})
            return dict(sorted(out.items()))

        def make(hparams: Mapping[str, jax.Array]) -> Any:
            return factory(**fixed, **{k: _weak(v) for k, v in hparams.items()})

        def init_fn(params):
            count = jnp.zeros([], jnp.int32)
            # Copies: a stored value must not be the caller's array (or another slot's), or
            # the state could not be donated to a jitted step.
            hparams = {k: jnp.copy(v) for k, v in current(count).items()}
            return HparamsState(count, hparams, make(hparams).init(params), name, scheduled)

        def update_fn(updates, state, params=None, **extra_args):
            hparams = dict(state.hparams)
            for k, f in schedules.items():
                hparams[k] = _as_stored(f(state.count), hparams[k])
            updates, inner = call_update(
                make(hparams), updates, state.inner_state, params, **extra_args
            )
            new_state = HparamsState(
                safe_increment(state.count), hparams, inner, state.name, state.scheduled
            )
            return updates, new_state

        tx = HparamsTransformation(init_fn, update_fn)
        tx.factory, tx.name, tx.kwargs = factory, name, all_kwargs
        tx.hparam_names = tuple(sorted([*values, *schedules]))
        return tx

    return build


def _named(state: Any) -> list[tuple[str, HparamsState, str]]:
    """``(full name prefix, node, prefix)`` of every hyperparameter node, in walk order."""
    out = []
    unique = UniqueNames()

    def record(node, prefix):
        if isinstance(node, HparamsState):
            out.append((prefix + unique(prefix, node.name), node, prefix))
        return node

    visit(state, record)
    return out


def get_hparams(state: Any) -> dict[str, jax.Array]:
    """Every hyperparameter in ``state`` by its unique name; ``{}`` when there are none.

    Names are ``<name>/<argument>``, with ``groups/<group>/`` in front inside parameter
    groups. Works inside ``jit`` and ``vmap``.
    """
    return {f"{base}/{k}": v for base, node, _ in _named(state) for k, v in node.hparams.items()}


def set_hparams(state: Any, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Any:
    """A copy of ``state`` with the named hyperparameters replaced.

    Pass names as keywords (``**{"adam/learning_rate": 1e-3}``) or as one mapping. Values
    may be Python floats or (traced) scalars; they are stored as float32 scalars, so a jitted
    step does not retrace. A value driven by a schedule is recomputed at the next step and
    cannot be set.

    Raises:
        JoptError: for an unknown name (the message lists the valid ones), a scheduled
            name, or a non-scalar value.
    """
    new = {**(values or {}), **kwargs}
    if not new:
        return state
    named = _named(state)
    valid = {f"{base}/{k}": (base, node, k) for base, node, _ in named for k in node.hparams}
    for key, value in new.items():
        if key not in valid:
            listed = ", ".join(sorted(valid)) or "(none: the state holds no hyperparameters)"
            raise JoptError(f"unknown hyperparameter {key!r}; valid names: {listed}")
        if valid[key][2] in valid[key][1].scheduled:
            raise JoptError(
                f"hyperparameter {key!r} follows a schedule and cannot be set; "
                "build the optimizer with a number instead of a schedule to set it"
            )
        if np.ndim(value) != 0:
            raise JoptError(
                f"hyperparameter {key!r} must be a scalar, got shape {np.shape(value)} "
                "(to try several values, jax.vmap over set_hparams)"
            )
    by_base: dict[str, dict[str, Any]] = {}
    for key, value in new.items():
        base, node, k = valid[key]
        by_base.setdefault(base, {})[k] = _as_stored(value, node.hparams[k])
    unique = UniqueNames()

    def replace(node, prefix):
        if isinstance(node, HparamsState):
            base = prefix + unique(prefix, node.name)
            if base in by_base:
                hparams = {**node.hparams, **by_base[base]}
                return HparamsState(
                    node.count, hparams, node.inner_state, node.name, node.scheduled
                )
        return node

    return visit(state, replace)
