"""Checks on the open keyword arguments of a config: an optimizer's, a chain transform's and a
parameter group's.

The schema cannot type these (they depend on the factory named), so each value is checked
against the factory's signature: the parameter must exist (else "did you mean"), and the value
must fit the parameter's kind, read from its default and annotation: true/false for a flag, an
integer (int32) for a count, a finite number for a hyperparameter, a list of finite numbers for
a tuple such as ``betas``. Decay rates (``b1``, ``b2``, ``decay``, ``rho``, ``momentum``...)
are in [0, 1) (1 is allowed where the factory's default is 1). Each failure is one line
naming the key, the value and what is allowed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from jopt.core.errors import JoptError
from jopt.experiment import _registry as reg
from jopt.experiment._parse import closest
from jopt.experiment._schema import INT32_MAX

__all__ = ["check_group_rules", "check_kwargs", "finite_everywhere", "normalize_numbers"]

# Exponential-decay rates of moment estimates: a value of 1 or more never forgets (or grows).
DECAY_RATES = frozenset(
    {"b1", "b2", "b3", "beta1", "beta2", "beta3", "adam_b1", "adam_b2", "decay", "rho",
     "momentum", "ema_decay", "betas"}
)  # fmt: skip
# Keys a config group rule may hold besides the optimizer's own arguments.
GROUP_KEYS = ("pattern", "name", "freeze", "lr_mult", "decoupled_weight_decay")


def _kind(p: inspect.Parameter) -> str:
    """``bool``, ``int``, ``number``, ``numbers`` (a tuple of numbers), ``str`` or ``any``."""
    ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
    ann = str(ann)
    d = p.default
    if isinstance(d, bool) or ann == "bool":
        return "bool"
    if ann in ("int", "int | None") or (
        type(d) is int
        and "float" not in ann
        and "Array" not in ann
        and ann not in ("AL", "ScalarOrSchedule")
    ):
        return "int"
    if (
        isinstance(d, float)
        or any(t in ann for t in ("float", "ArrayLike", "ScalarOrSchedule"))
        or ann.startswith("AL")
    ):
        if ann.startswith("tuple") or isinstance(d, tuple):
            return "numbers_or_name" if ann.endswith("| str") else "numbers"
        return "number"
    if isinstance(d, tuple) and d and all(isinstance(x, (int, float)) for x in d):
        return "numbers"
    if ann in ("str", "str | None") or isinstance(d, str):
        return "str"
    return "any"


def _flat(value: list) -> list:
    """The numbers of a list of numbers or of lists of numbers (rows)."""
    return [x for v in value for x in (v if isinstance(v, list) else [v])]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_number(v: Any) -> Any:
    """A YAML 1.1 string such as ``1e-3`` read as the number it spells; else ``v``."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def finite_everywhere(where: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise JoptError(f"{where} must be a finite number, got {value!r}")
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            finite_everywhere(f"{where}[{i}]", v)
    if isinstance(value, dict):
        for k, v in value.items():
            finite_everywhere(f"{where}.{k}", v)


def _check_value(where: str, name: str, value: Any, p: inspect.Parameter | None) -> Any:
    """The checked value (numeric strings become numbers)."""
    kind = _kind(p) if p is not None else "any"
    if kind in ("number", "int", "numbers", "numbers_or_name") and not isinstance(value, str):
        value = [_as_number(v) for v in value] if isinstance(value, list) else _as_number(value)
    finite_everywhere(where, value)
    if value is None:
        return value
    if kind == "bool" and not isinstance(value, bool):
        raise JoptError(f"{where} must be true or false, got {value!r}")
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise JoptError(f"{where} must be an integer, got {value!r}")
        if not -(2**31) <= value <= INT32_MAX:
            raise JoptError(f"{where} must be an integer within int32, got {value!r}")
    if kind == "number" and not _is_number(value):
        raise JoptError(f"{where} must be a number, got {value!r}")
    if kind == "numbers" and not (
        isinstance(value, (list, tuple)) and all(_is_number(v) for v in value)
    ):
        raise JoptError(f"{where} must be a list of numbers, got {value!r}")
    if kind == "numbers_or_name" and not (
        isinstance(value, str)
        or (isinstance(value, list) and all(_is_number(v) for v in _flat(value)))
    ):
        raise JoptError(f"{where} must be a preset name or a list of numbers, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise JoptError(f"{where} must be a string, got {value!r}")
    if name in DECAY_RATES:
        # 1 (no decay) only where the factory's own default is 1 (SM3's b2)
        one_ok = p is not None and _is_number(p.default) and p.default == 1
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if _is_number(v) and not (0 <= v < 1 or (one_ok and v == 1)):
                allowed = "[0, 1]" if one_ok else "[0, 1)"
                raise JoptError(f"{where} is a decay rate and must be in {allowed}, got {v!r}")
    negative_default = p is not None and _is_number(p.default) and p.default < 0
    if _is_number(value) and value < 0 and not negative_default:
        raise JoptError(f"{where} must be non-negative, got {value!r}")
    return value


def check_kwargs(
    where: str, fn: Callable[..., Any], given: dict, reserved: tuple[str, ...] = ()
) -> None:
    """Every key of ``given`` is a parameter of ``fn`` and its value fits; numeric strings in
    ``given`` are replaced by their numbers."""
    params = inspect.signature(fn).parameters
    names, var = reg.signature_params(fn)
    allowed = [n for n in names if n not in reserved]
    for key, value in list(given.items()):
        if key in reserved:
            continue
        if key not in allowed and not var:
            raise JoptError(
                f"unknown key '{where}.{key}'{closest(key, allowed)} "
                f"(allowed here: {', '.join(allowed) or 'none'})"
            )
        given[key] = _check_value(f"{where}.{key}", key, value, params.get(key))


def normalize_numbers(value: Any) -> Any:
    return _as_number(value)


def check_group_rules(rules: list[dict], factory: Callable[..., Any]) -> None:
    """``optimizer.groups``: each rule has a ``pattern`` string, known keys (the optimizer's
    arguments, ``lr_mult``, ``name``, ``freeze``) and values that fit them."""
    params = inspect.signature(factory).parameters
    names, _ = reg.signature_params(factory)
    allowed = [*GROUP_KEYS, *names]
    for i, rule in enumerate(rules):
        where = f"optimizer.groups[{i}]"
        if not isinstance(rule, dict):
            raise JoptError(f"{where} must be a mapping with a 'pattern', got {rule!r}")
        pattern = rule.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise JoptError(
                f"{where} needs a 'pattern' (a glob over parameter paths such as 'head/**')"
            )
        for key, value in list(rule.items()):
            key = str(key)
            if key not in allowed:
                raise JoptError(
                    f"unknown key '{where}.{key}'{closest(key, allowed)} "
                    f"(allowed here: {', '.join(allowed)})"
                )
            if key == "freeze" and not isinstance(value, bool):
                raise JoptError(f"{where}.freeze must be true or false, got {value!r}")
            if key == "name" and (not isinstance(value, str) or not value):
                raise JoptError(f"{where}.name must be a non-empty string, got {value!r}")
            if key == "lr_mult":
                value = _as_number(value)
                if not _is_number(value) or not math.isfinite(value) or value < 0:
                    raise JoptError(f"{where}.lr_mult must be a finite number >= 0, got {value!r}")
                rule[key] = value
            elif key in params:
                rule[key] = _check_value(f"{where}.{key}", key, value, params[key])
