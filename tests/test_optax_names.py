"""Same name, same meaning: every public name jopt shares with optax takes optax's signature.

For a function: optax's parameters come first, in optax's order, with optax's names, kinds and
defaults; jopt's extra parameters are keyword-only (or ``**kwargs``) and have defaults, so any
call written for optax means the same with jopt. For a class (a state NamedTuple): every field
optax's has, jopt's has too (jopt's states may hold more, e.g. ``nu_max`` for AMSGrad).

Where jopt's meaning differs, jopt uses another name (``with_param_ema``, ``with_lookahead``,
``with_norms``; docs/decisions.md), so there is no exception list here.
"""

from __future__ import annotations

import inspect
import types
import warnings

import numpy as np
import optax
import pytest

import jopt

# jopt's public namespaces, and optax's, in lookup order (the first optax hit is the oracle).
_JOPT_NAMESPACES = [
    jopt,
    jopt.schedules,
    jopt.transforms,
    jopt.optimizers,
    jopt.combinators,
    jopt.core,
]
_OPTAX_NAMESPACES = [optax, optax.schedules, optax.transforms, optax.contrib]


def _public(module: types.ModuleType) -> dict[str, object]:
    names = set(getattr(module, "__all__", ())) | {n for n in dir(module) if not n.startswith("_")}
    out = {}
    for n in names:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            try:
                out[n] = getattr(module, n)
            except (AttributeError, DeprecationWarning):
                continue  # optax's deprecated aliases are not the reference
    return out


def _comparable(obj: object) -> bool:
    return inspect.isfunction(obj) or inspect.isclass(obj)


def _shared() -> dict[str, tuple[str, object, str, object]]:
    """name -> (jopt path, jopt object, optax path, optax object) for every shared name."""
    out: dict[str, tuple[str, object, str, object]] = {}
    for jmod in _JOPT_NAMESPACES:
        for name, obj in _public(jmod).items():
            if not _comparable(obj) or not getattr(obj, "__module__", "").startswith("jopt"):
                continue
            for omod in _OPTAX_NAMESPACES:
                ref = _public(omod).get(name)
                if ref is not None and _comparable(ref):
                    key = f"{jmod.__name__}.{name}"
                    out[key] = (key, obj, f"{omod.__name__}.{name}", ref)
                    break
    return out


SHARED = _shared()


def _same_default(a: object, b: object) -> bool:
    if a is b:
        return True
    if isinstance(b, optax.GradientTransformation) and a is not inspect.Parameter.empty:
        # optax builds a default transform (a line search, a Hessian estimator) at import; an
        # instance cannot be compared, so jopt may spell "the same default" as None or a sentinel.
        return True
    if callable(a) and callable(b):  # a default function (a decay rule): compare its values
        try:
            return all(np.allclose(a(t), b(t)) for t in (1, 2, 10, 1000))
        except Exception:
            return getattr(a, "__name__", a) == getattr(b, "__name__", b)
    try:
        return bool(np.all(np.asarray(a == b)))
    except Exception:
        return False


def _signature_problems(ours, theirs) -> list[str]:
    try:
        sj, so = inspect.signature(ours), inspect.signature(theirs)
    except (TypeError, ValueError):
        return []  # builtins without signatures: nothing to compare
    pj, po = list(sj.parameters.values()), list(so.parameters.values())
    problems = []
    for i, o in enumerate(po):
        if i >= len(pj):
            problems.append(f"missing parameter {o.name!r}")
            continue
        j = pj[i]
        if o.kind is inspect.Parameter.VAR_POSITIONAL and j.kind is o.kind:
            continue  # *args: the name is not part of the call
        if j.name != o.name:
            problems.append(f"parameter {i} is {j.name!r}, optax has {o.name!r}")
        elif j.kind is not o.kind:
            problems.append(f"{o.name!r} is {j.kind.description}, optax: {o.kind.description}")
        elif not _same_default(j.default, o.default):  # `empty` (no default) included
            problems.append(f"{o.name!r}: default {j.default!r}, optax {o.default!r}")
    for j in pj[len(po) :]:
        if j.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if j.kind is not inspect.Parameter.KEYWORD_ONLY:
            problems.append(f"extra parameter {j.name!r} must be keyword-only")
        elif j.default is inspect.Parameter.empty:
            problems.append(f"extra keyword-only parameter {j.name!r} needs a default")
    return problems


def _fields(cls) -> list[str] | None:
    fields = getattr(cls, "_fields", None)
    if fields is not None:
        return list(fields)
    params = getattr(cls, "__dataclass_fields__", None)
    return list(params) if params is not None else None


def _class_problems(ours, theirs) -> list[str]:
    fo, fj = _fields(theirs), _fields(ours)
    if fo is None:
        return []  # not a record type on optax's side (a protocol class, an alias)
    if fj is None:
        return [f"optax's is a record with fields {fo}, jopt's is not"]
    missing = [f for f in fo if f not in fj]
    return [f"fields {missing} of optax's are missing (jopt has {fj})"] if missing else []


def test_the_shared_names_include_the_core_api():
    names = {key.rsplit(".", 1)[1] for key in SHARED}
    expected = {"adam", "sgd", "chain", "apply_updates", "scale_by_adam", "clip_by_global_norm"}
    expected |= {"exponential_decay", "join_schedules", "add_noise", "scale_by_learning_rate"}
    assert expected <= names, sorted(expected - names)


def test_renamed_wrappers_no_longer_shadow_optax_names():
    # jopt's wrappers of these meanings have their own names; if jopt offers the optax names,
    # they must mean what optax's mean (checked by the signature test below).
    for name in ("with_param_ema", "with_lookahead", "with_norms"):
        assert hasattr(jopt, name)
    for ours, theirs in (("ema", optax.ema), ("lookahead", optax.lookahead)):
        if hasattr(jopt, ours):
            assert not _signature_problems(getattr(jopt, ours), theirs)


@pytest.mark.parametrize("key", sorted(SHARED))
def test_shared_name_takes_optax_signature(key):
    _, ours, optax_path, theirs = SHARED[key]
    if inspect.isclass(theirs):
        problems = _class_problems(ours, theirs) if inspect.isclass(ours) else ["not a class"]
    elif inspect.isclass(ours):
        problems = [f"a class, where {optax_path} is a function"]
    else:
        problems = _signature_problems(ours, theirs)
    assert not problems, f"{key} vs {optax_path}: " + "; ".join(problems)


def test_the_checker_catches_differences():
    def optax_like(learning_rate, b1=0.9, *, nesterov=False):
        del learning_rate, b1, nesterov

    def swapped(b1=0.9, learning_rate=None, *, nesterov=False):
        del learning_rate, b1, nesterov

    def positional_extra(learning_rate, b1=0.9, extra=1, *, nesterov=False):
        del learning_rate, b1, nesterov, extra

    def other_default(learning_rate, b1=0.5, *, nesterov=False):
        del learning_rate, b1, nesterov

    def good(learning_rate, b1=0.9, *, nesterov=False, mu_dtype=None):
        del learning_rate, b1, nesterov, mu_dtype

    assert _signature_problems(swapped, optax_like)
    assert _signature_problems(positional_extra, optax_like)
    assert _signature_problems(other_default, optax_like)
    assert not _signature_problems(good, optax_like)
