"""What a config may name: optimizers, transforms, schedules, datasets, models, activations.

Each list is read from the layer that owns it (``jopt.optimizers.__all__``, ``jopt.data``'s
``dataset_names`` and ``STRATEGIES``, ``jopt.models.MODELS`` ...), so a new optimizer or dataset
shows up in ``jopt list`` and passes ``jopt validate`` without touching this package. An import
error in any of those layers is an error here too, never an empty list.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optax

from jopt import combinators, optimizers, transforms
from jopt.core import JoptError
from jopt.data import PREPROCESS, REMAINDERS, STRATEGIES
from jopt.data import dataset_names as data_names
from jopt.experiment._config_optimizers import HELPERS, config_factory
from jopt.models import ACTIVATIONS, MODELS, make_model
from jopt.numerics import list_problems
from jopt.train import LOSSES

__all__ = [
    "ACCURACY_METRICS",
    "BATCHING",
    "METRICS",
    "REMAINDERS",
    "SCHEDULES",
    "TASKS",
    "TASK_LOSS",
    "TASK_LOSSES",
    "activation_names",
    "dataset_names",
    "listing",
    "loss_names",
    "make_model",
    "model_fields",
    "model_names",
    "optax_transform_names",
    "optimizer_factory",
    "optimizer_names",
    "preprocess_names",
    "problem_names",
    "signature_params",
    "transform_factory",
    "transform_names",
]

# The ``schedule.name`` values the builder (``_build.schedule_multiplier``) knows.
SCHEDULES = ("constant", "cosine", "warmup_cosine", "warmup", "step", "exponential", "plateau")
BATCHING = STRATEGIES
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
ACCURACY_METRICS = ("train_accuracy", "val_accuracy")  # classification only
TASKS = ("classification", "regression")
# The loss a task gets when ``loss.name`` is null, and the losses that fit each task.
TASK_LOSS = {"classification": "cross_entropy", "regression": "mse"}
TASK_LOSSES = {"classification": ("cross_entropy",), "regression": ("mse", "huber")}


def optimizer_names() -> list[str]:
    """Every optimizer factory exported by ``jopt.optimizers`` (functions, not state classes,
    not the helpers in ``_config_optimizers.HELPERS``)."""
    return sorted(
        n
        for n in optimizers.__all__
        if inspect.isfunction(getattr(optimizers, n)) and n not in HELPERS
    )


def optimizer_factory(name: str) -> Callable[..., Any]:
    """The factory a config's ``optimizer.name`` builds (``_config_optimizers`` adapts the few
    whose arguments a YAML file cannot hold)."""
    if name in HELPERS:
        raise JoptError(f"{name!r} is not an optimizer: {HELPERS[name]}")
    names = optimizer_names()
    if name not in names:
        raise JoptError(f"unknown optimizer {name!r}; allowed: {', '.join(names)}")
    return config_factory(name) or getattr(optimizers, name)


def transform_factory(name: str) -> Callable[..., Any]:
    """An extra chain element: a jopt transform or combinator, else an optax transform."""
    if not name.startswith("_"):
        for module in (transforms, combinators, optax):
            obj = getattr(module, name, None)
            if callable(obj) and not inspect.isclass(obj):  # a factory, not a state class
                return obj
    raise JoptError(
        f"unknown transform {name!r} in optimizer.chain; allowed: "
        f"{', '.join(transform_names())} (or any optax transform)"
    )


def transform_names() -> list[str]:
    """The transform factories of ``jopt.transforms`` (not its state classes)."""
    return sorted(
        n
        for n in transforms.__all__
        if callable(obj := getattr(transforms, n, None)) and not inspect.isclass(obj)
    )


def optax_transform_names() -> list[str]:
    """optax's public callables (a chain entry may name any optax transform)."""
    return sorted(
        n
        for n in dir(optax)
        if not n.startswith("_") and callable(obj := getattr(optax, n)) and not inspect.isclass(obj)
    )


def dataset_names() -> list[str]:
    return sorted(data_names())


def problem_names() -> list[str]:
    """Classical test problems from ``jopt.numerics`` (``problem: {name: rosenbrock}``)."""
    return sorted(list_problems())


def model_names() -> list[str]:
    return sorted(MODELS)


def model_fields(name: str) -> list[str]:
    """Keyword options a model class takes (its dataclass fields)."""
    fields = getattr(MODELS.get(name), "__dataclass_fields__", {})
    return [f for f in fields if f not in ("parent", "name", "num_outputs")]


def activation_names() -> list[str]:
    return sorted(ACTIVATIONS)


def loss_names() -> list[str]:
    return sorted(LOSSES)


def preprocess_names() -> list[str]:
    return sorted(PREPROCESS)


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
        "test problems": problem_names(),
        "models": model_names(),
        "activations": activation_names(),
        "losses": loss_names(),
    }
