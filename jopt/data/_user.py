"""A user's data function as a data set: ``load_dataset(fn, ...)`` calls it and checks its return.

The contract (``docs/config.md``, README "Bring your own model and data")::

    fn(*, seed: int, **options) -> (x, y) | {"x": x, "y": y, ...}

``seed`` is passed only when ``fn`` takes it (``data.seed``: the same seed must give the same
data). It returns the whole set as ``(x, y)`` arrays, or a dict with ``x``, ``y`` and optionally
a predefined validation split (``x_val``, ``y_val``: ``val_fraction`` is then not used), a
predefined test split (``x_test``, ``y_test``: ``test_fraction`` is then not used), ``task``
(``classification`` or ``regression``), ``num_classes`` and ``kind`` (``tabular``, ``signal``
or ``image``, for augmentation). The arrays then go through the same checks, seeded split and
train-fitted preprocessing as a built-in set. Anything else is a one-line ``JoptError`` that
names the function.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jopt.core.errors import JoptError
from jopt.data._builtin import Raw
from jopt.data._dataset import TASKS

KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test", "task", "num_classes", "kind")
KINDS = ("tabular", "signal", "image")
EXPECTED = (
    "(x, y) arrays or a dict with keys x, y [x_val, y_val, x_test, y_test, task, num_classes, kind]"
)


def function_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of ``fn``, as a config names it."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', type(fn).__name__)}"


def takes_seed(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "seed" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params
    )


def where(e: BaseException) -> str:
    """``file:line`` of the innermost frame of ``e``'s traceback that is real source."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _array(value: Any, key: str, source: str) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise JoptError(f"data function {source}: {key} is not an array ({one_line(e)})") from None
    if a.dtype == object:
        raise JoptError(f"data function {source}: {key} is not a numeric array (dtype object)")
    return a


def user_raw(
    fn: Callable[..., Any], seed: int, opts: dict, task: str | None
) -> tuple[Raw, tuple[np.ndarray, np.ndarray] | None]:
    """Call ``fn`` and turn its return into a :class:`Raw` record plus a given val split."""
    source = function_name(fn)
    kwargs = dict(opts)
    if takes_seed(fn):
        kwargs["seed"] = seed
    try:
        value = fn(**kwargs)
    except JoptError:
        raise
    except TypeError as e:
        raise JoptError(
            f"data function {source}: bad call with {sorted(kwargs)} ({one_line(e)}); expected "
            "fn(*, seed, **options) with options from data.options"
        ) from None
    except Exception as e:
        raise JoptError(f"data function {source} raised {one_line(e)} at {where(e)}") from None
    if isinstance(value, tuple) and len(value) == 2:
        value = {"x": value[0], "y": value[1]}
    if not isinstance(value, Mapping):
        raise JoptError(
            f"data function {source} returned {type(value).__name__}; expected {EXPECTED}"
        )
    unknown = sorted(str(k) for k in value if k not in KEYS)
    if unknown:
        raise JoptError(
            f"data function {source} returned unknown key(s) {unknown}; allowed: {', '.join(KEYS)}"
        )
    for a, b in (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test")):
        if (a in value) != (b in value) or (a == "x" and a not in value):
            raise JoptError(
                f"data function {source}: {a!r} and {b!r} must come together; expected {EXPECTED}"
            )
    given = value.get("task")
    if given is not None and given not in TASKS:
        raise JoptError(f"data function {source}: task {given!r} is not one of {', '.join(TASKS)}")
    if task is not None and given is not None and task != given:
        raise JoptError(
            f"data function {source} returned task {given!r} but data.task is {task!r}; "
            "drop one of them"
        )
    kind = value.get("kind", "tabular")
    if kind not in KINDS:
        raise JoptError(f"data function {source}: kind {kind!r} is not one of {', '.join(KINDS)}")
    raw = Raw(
        _array(value["x"], "x", source),
        _array(value["y"], "y", source),
        task or given or "classification",
        value.get("num_classes"),
        kind,
        info={"source": source},
    )
    if "x_test" in value:
        raw.x_test = _array(value["x_test"], "x_test", source)
        raw.y_test = _array(value["y_test"], "y_test", source)
    val = None
    if "x_val" in value:
        val = (_array(value["x_val"], "x_val", source), _array(value["y_val"], "y_val", source))
    return raw, val
