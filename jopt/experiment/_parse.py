"""Reading YAML into the typed config: structure, types, dotted overrides, one-line errors.

Structural checks (unknown keys, types) happen here; checks that need the registries
(optimizer, dataset and model names, hyperparameter ranges) are in ``_validate``; ``_load``
puts the two together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import math
import os
import types
import typing
from typing import Any

import yaml

from jopt.core.errors import JoptError
from jopt.experiment._schema import COUNT, OPEN_SECTIONS, Range, field_range

__all__ = [
    "build_section",
    "closest",
    "load_yaml_text",
    "parse_overrides",
    "parse_value",
    "read_yaml",
    "set_dotted",
    "type_name",
]


def closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        type(None): "null",
    }.get(tp, str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and build dataclasses."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build_section(tp, value, path)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except JoptError:
                pass
        raise JoptError(f"{path}: expected {type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise JoptError(f"{path}: expected {type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise JoptError(f"{path}: expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(v, item, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept what Python reads as a number.
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None:
            if not math.isfinite(number):
                raise JoptError(f"{path} must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - the schema uses only the types above
        raise TypeError(f"unsupported schema type {tp!r}")
    raise JoptError(f"{path}: expected {type_name(tp)}, got {value!r}")


def build_section(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from the mapping ``raw`` found at ``path``, checking every key."""
    if raw is None:
        raw = {}
    if isinstance(raw, str) and "name" in _hints(cls):
        raw = {"name": raw}  # shorthand: `schedule: cosine`
    if not isinstance(raw, dict):
        raise JoptError(f"{path or 'config'}: expected a mapping, got {raw!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    open_section = cls in OPEN_SECTIONS
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        where = f"{path}.{key}" if path else key
        if key in names and not (open_section and key == "kwargs"):
            kwargs[key] = _convert(value, hints[key], where)
            _check_range(where, kwargs[key], field_range(fields[key]))
        elif open_section:
            extra[key] = value
        else:
            raise JoptError(
                f"unknown key {where!r}{closest(key, names)} (allowed: {', '.join(names)})"
            )
    if open_section:
        kwargs["kwargs"] = extra
    return cls(**kwargs)


def _check_range(where: str, value: Any, rng: Range | None) -> None:
    """Numbers (or a list's numbers) within the field's range; integers default to int32."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_range(f"{where}[{i}]", v, rng)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if rng is None:
        if not isinstance(value, int):
            return
        rng = COUNT
    if not rng.contains(value):
        what = "an integer" if isinstance(value, int) else "a number"
        raise JoptError(f"{where} must be {what} {rng.describe()}, got {value!r}")


def parse_value(text: str) -> Any:
    """A command-line value, typed as YAML types it (``3e-3`` is a float, ``[1, 2]`` a list)."""
    try:
        value = load_yaml_text(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    return value


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating sections as needed."""
    parts = key.split(".")
    if not all(parts):
        raise JoptError(f"bad override key {key!r}: expected dotted names like optimizer.b1")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None or isinstance(child, str):
            child = {} if child is None else {"name": child}
            node[part] = child
        elif not isinstance(child, dict):
            raise JoptError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    out = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise JoptError(
                f"bad override {item!r}: expected KEY=VALUE, e.g. optimizer.learning_rate=3e-3"
            )
        out.append((key.strip(), parse_value(text.strip())))
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                problem = f"duplicate key {key!r} (first at line {first})"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no tags run


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a config file into a dict; missing, empty, unreadable, non-UTF-8, malformed files
    and duplicate keys are JoptErrors."""
    path = os.fspath(path)
    if not path:
        raise JoptError("config file path is empty")
    if not os.path.exists(path):
        raise JoptError(f"config file not found: {path}")
    if os.path.isdir(path):
        raise JoptError(f"expected a YAML config file, got a directory: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        bad = e.object[e.start : e.start + 1]
        raise JoptError(f"config file {path} is not UTF-8 text (byte {e.start}: {bad!r})") from None
    except OSError as e:
        raise JoptError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        raw = load_yaml_text(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise JoptError(f"malformed YAML in {path}{where}: {problem}") from None
    if raw is None:
        raise JoptError(f"config file is empty: {path}")
    if not isinstance(raw, dict):
        raise JoptError(
            f"config file {path} must hold a mapping of sections, got {type(raw).__name__}"
        )
    return raw
