"""A pytest plugin that runs optax's own test files with jopt substituted (issue 11, item 5).

Loaded in a separate pytest process (``-p optax_substitution``, see ``tests/test_optax_suite.py``);
jopt's strict conftest is not used there, so optax's tests run under standard dtype promotion.

How the substitution works, without copying or editing optax's test code:

- While pytest imports an optax test module, every optax module that the test module imports
  (``from optax._src import alias``, ``from optax import schedules``...) is handed out as a
  *proxy*. The proxy answers an attribute lookup with jopt's same-named public function when
  jopt has one (``jopt.<name>`` or ``jopt.schedules.<name>``), and with optax's attribute
  otherwise. Only the test module sees proxies: optax's own modules keep their references, so
  ``optax.inject_hyperparams(jopt.adam)`` is optax wrapping jopt.
- Each substituted function is wrapped to record, per test, that it was called. A test counts
  as "applicable" only if it called jopt; tests that ran optax alone are "not applicable".
- Cases whose parameters name an optimizer jopt does not have (``opt_name='adabelief'``) are
  deselected before they run: they would only exercise optax.

Environment: ``JOPT_SUBST_OUT`` (a JSON report path, required), ``JOPT_SUBST_OFF=1`` (run
optax unsubstituted, to learn which cases pass on optax itself).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import sys
import types
from typing import Any

import pytest

_OFF = os.environ.get("JOPT_SUBST_OFF") == "1"
_OUT = os.environ.get("JOPT_SUBST_OUT")

_CURRENT: list[str | None] = [None]
_CALLS: dict[str, set[str]] = {}
_LOOKUPS: dict[str, set[str]] = {}  # jopt name -> tests (or "<import>") that looked it up
_SUBSTITUTED: dict[str, str] = {}  # "optax.module.name" -> "jopt.name"
_PROXIES: dict[str, types.ModuleType] = {}
_DESELECTED: dict[str, str] = {}
_RESULTS: dict[str, dict[str, Any]] = {}
_PROXY_CHECK: dict[str, list[str]] = {}


def jopt_equivalent(name: str) -> tuple[str, Any] | None:
    """jopt's public function of the same name, searched in ``jopt`` then ``jopt.schedules``."""
    import jopt

    for path, namespace in (("jopt", jopt), ("jopt.schedules", jopt.schedules)):
        fn = getattr(namespace, name, None)
        if (
            fn is not None
            and inspect.isfunction(fn)
            and getattr(fn, "__module__", "").startswith("jopt")
        ):
            return f"{path}.{name}", fn
    return None


def _recording(qualname: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # a call while a test module is imported (building parameters) counts as "<import>"
        _CALLS.setdefault(_CURRENT[0] or "<import>", set()).add(qualname)
        return fn(*args, **kwargs)

    wrapper.__jopt_substitute__ = qualname
    return wrapper


class _Proxy(types.ModuleType):
    """An optax module as one test module sees it: jopt's same-named functions first."""

    def __init__(self, module: types.ModuleType):
        super().__init__(module.__name__, module.__doc__)
        object.__setattr__(self, "_optax_module", module)
        object.__setattr__(self, "_cache", {})

    def __getattr__(self, name: str) -> Any:
        module = object.__getattribute__(self, "_optax_module")
        cache = object.__getattribute__(self, "_cache")
        if name in cache:
            _note_lookup(cache[name])
            return cache[name]
        value = getattr(module, name)
        if not name.startswith("_") and inspect.isfunction(value):
            found = jopt_equivalent(name)
            if found is not None:
                qualname, fn = found
                value = _recording(qualname, fn)
                _SUBSTITUTED[f"{module.__name__}.{name}"] = qualname
        if isinstance(value, types.ModuleType) and value.__name__.startswith("optax"):
            value = _proxy(value)
        cache[name] = value
        _note_lookup(value)
        return value

    def __dir__(self):
        return dir(object.__getattribute__(self, "_optax_module"))


def _note_lookup(value: Any) -> None:
    qualname = getattr(value, "__jopt_substitute__", None)
    if qualname is not None:
        _LOOKUPS.setdefault(qualname, set()).add(_CURRENT[0] or "<import>")


def _proxy(module: types.ModuleType) -> types.ModuleType:
    if module.__name__ not in _PROXIES:
        _PROXIES[module.__name__] = _Proxy(module)
    return _PROXIES[module.__name__]


def _is_test_module(name: str) -> bool:
    return name.endswith("_test")


def _swap_in() -> list[tuple[types.ModuleType, str, Any]]:
    """Point every loaded optax package attribute at a proxy; returns what to restore."""
    restore = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("optax.") or module is None or _is_test_module(name):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name)
        if parent is None or getattr(parent, child, None) is not module:
            continue
        restore.append((parent, child, module))
        setattr(parent, child, _proxy(module))
    return restore


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    if _OFF or not isinstance(collector, pytest.Module):
        return (yield)
    import optax  # noqa: F401  (load optax before swapping its attributes)

    restore = _swap_in()
    try:
        return (yield)
    finally:
        for parent, child, module in restore:
            setattr(parent, child, module)
        mod = getattr(collector, "_obj", None)
        if mod is not None:
            _PROXY_CHECK[mod.__name__] = _check_module(mod)


def _check_module(mod: types.ModuleType) -> list[str]:
    """Names of optax modules that the test module holds *unproxied* (should be none)."""
    bad = []
    for key, value in vars(mod).items():
        if (
            isinstance(value, types.ModuleType)
            and value.__name__.startswith("optax.")
            and not isinstance(value, _Proxy)
            and not _is_test_module(value.__name__)
            and key != "test_utils"
        ):
            bad.append(key)
    return bad


_OPT_NAME = re.compile(r"opt_name='([A-Za-z0-9_]+)'")


_PARAMS: dict[str, str] = {}


def _optax_has(name: str) -> bool:
    import optax

    return callable(getattr(optax, name, None)) or callable(getattr(optax.contrib, name, None))


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "obj", None), "__x_params_repr__", None)
        if params:
            _PARAMS[item.nodeid] = params
    if _OFF:
        return
    keep, drop = [], []
    for item in items:
        params = _PARAMS.get(item.nodeid, "")
        m = _OPT_NAME.search(params or "")
        # an optimizer optax has and jopt lacks ('sgd_mom' is only a label in optax's tests)
        if m and _optax_has(m.group(1)) and jopt_equivalent(m.group(1)) is None:
            _DESELECTED[item.nodeid] = f"optimizer {m.group(1)!r} is not in jopt"
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _CURRENT[0] = item.nodeid
    try:
        return (yield)
    finally:
        _CURRENT[0] = None


def pytest_runtest_logreport(report):
    entry = _RESULTS.setdefault(
        report.nodeid, {"outcome": "passed", "message": "", "params": _PARAMS.get(report.nodeid)}
    )
    if report.failed:
        entry["outcome"] = "failed"
        crash = getattr(report.longrepr, "reprcrash", None)
        entry["message"] = (crash.message if crash else str(report.longrepr))[:300]
    elif report.skipped and entry["outcome"] != "failed":
        entry["outcome"] = "skipped"


def pytest_sessionfinish(session, exitstatus):
    if not _OUT:
        return
    import optax

    report = {
        "optax_version": optax.__version__,
        "substituted": dict(sorted(_SUBSTITUTED.items())),
        "unproxied_modules": {k: v for k, v in _PROXY_CHECK.items() if v},
        "deselected": _DESELECTED,
        "lookups": {k: sorted(v) for k, v in sorted(_LOOKUPS.items())},
        "tests": {
            nodeid: {**res, "jopt_calls": sorted(_CALLS.get(nodeid, ()))}
            for nodeid, res in _RESULTS.items()
        },
        "import_calls": sorted(_CALLS.get("<import>", ())),
    }
    with open(_OUT, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
