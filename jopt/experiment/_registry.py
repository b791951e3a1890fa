"""What a config may name: optimizers, transforms, schedules, datasets, models, activations.

Each list is read from the layer that owns it, so a new optimizer or dataset shows up in
``jopt list`` and passes ``jopt validate`` without touching this package.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from jopt.core.errors import JoptError

SCHEDULES = ("constant", "cosine", "warmup_cosine", "warmup", "step", "exponential")
BATCHING = ("full", "minibatch", "stochastic", "accumulate")
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")

# Names each layer may export for its registry, first match wins. The owners of jopt.data and
# jopt.models pick the spelling; we read whichever exists.
_REGISTRY_ATTRS = ("names", "available", "list_names", "REGISTRY", "NAMES")


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _from_module(module_name: str, attrs: tuple[str, ...]) -> list[str]:
    module = _try_import(module_name)
    if module is None:
        return []
    for attr in attrs:
        obj = getattr(module, attr, None)
        if obj is None:
            continue
        if callable(obj) and not isinstance(obj, type):
            obj = obj()
        return sorted(str(k) for k in obj)
    return []


def optimizer_names() -> list[str]:
    """Every factory exported by ``jopt.optimizers``."""
    module = importlib.import_module("jopt.optimizers")
    return sorted(n for n in getattr(module, "__all__", []) if callable(getattr(module, n)))


def optimizer_factory(name: str) -> Callable[..., Any]:
    names = optimizer_names()
    if name not in names:
        raise JoptError(f"unknown optimizer {name!r}; allowed: {', '.join(names)}")
    return getattr(importlib.import_module("jopt.optimizers"), name)


def transform_factory(name: str) -> Callable[..., Any]:
    """An extra chain element: a jopt transform or combinator, else an optax transform."""
    for module_name in ("jopt.transforms", "jopt.combinators", "optax"):
        module = _try_import(module_name)
        obj = getattr(module, name, None) if module is not None else None
        if callable(obj) and not name.startswith("_"):
            return obj
    raise JoptError(
        f"unknown transform {name!r} in optimizer.chain; allowed: "
        f"{', '.join(transform_names())} (or any optax transform)"
    )


def transform_names() -> list[str]:
    module = _try_import("jopt.transforms")
    return sorted(getattr(module, "__all__", [])) if module else []


def dataset_names() -> list[str]:
    names = _from_module("jopt.data", ("dataset_names", "DATASETS", *_REGISTRY_ATTRS))
    return sorted(set(names) | set(problem_names()))


def problem_names() -> list[str]:
    """Classical test problems from ``jopt.numerics`` (``data.name: rosenbrock``)."""
    return _from_module("jopt.numerics", ("list_problems", "problem_names", "PROBLEMS"))


def model_names() -> list[str]:
    return _from_module("jopt.models", ("model_names", "MODELS", *_REGISTRY_ATTRS))


def make_model(name: str, **kwargs: Any):
    return importlib.import_module("jopt.models").make_model(name, **kwargs)


def model_fields(name: str) -> list[str]:
    """Keyword options a model class takes (its dataclass fields)."""
    cls = getattr(importlib.import_module("jopt.models"), "MODELS", {}).get(name)
    fields = getattr(cls, "__dataclass_fields__", {})
    return [f for f in fields if f not in ("parent", "name", "num_outputs")]


def activation_names() -> list[str]:
    return _from_module("jopt.models", ("activation_names", "ACTIVATIONS"))


def loss_names() -> list[str]:
    return _from_module("jopt.train", ("LOSSES", "loss_names")) or ["cross_entropy", "mse"]


def preprocess_names() -> list[str]:
    return _from_module("jopt.data", ("preprocess_names", "PREPROCESSORS", "PREPROCESS"))


def signature_params(fn: Callable[..., Any]) -> tuple[list[str], bool]:
    """Keyword names ``fn`` accepts, and whether it takes ``**kwargs``."""
    sig = inspect.signature(fn)
    names = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    var = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var


def listing() -> dict[str, list[str]]:
    """Everything ``jopt list`` prints."""
    return {
        "optimizers": optimizer_names(),
        "schedules": list(SCHEDULES),
        "batching strategies": list(BATCHING),
        "datasets": dataset_names(),
        "models": model_names(),
        "activations": activation_names(),
        "losses": loss_names(),
    }
