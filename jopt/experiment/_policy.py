"""``train.precision`` and ``schedule: plateau`` for the runner.

:func:`precision` resolves the run's ``jopt.models.Precision`` (the model is built with it,
the optimizer wrapped by ``jopt.train.precision_optimizer``, the compiled epoch and evaluation
traced under its matmul precision). :func:`plateau_transform` is the plateau schedule's
transform, placed last in the chain by ``build_optimizer``; the runner feeds it
:func:`plateau_value` of ``schedule.metric`` after each evaluation (``jopt.observe_plateau``).
:func:`check_precision_plateau` refuses, in one line, the combinations that cannot be exact.
"""

from __future__ import annotations

from typing import Any

from jopt.core.errors import JoptError
from jopt.experiment._schema import Config

EVAL_PARAMS_OPTIMIZERS = ("schedule_free", "schedule_free_sgd", "schedule_free_adamw", "asgd")
"""Optimizers whose runs are evaluated with parameters derived from the optimizer state
(``jopt.schedule_free_eval_params``, ``jopt.asgd_averaged_params``) instead of the trained ones."""


def config_precision(config: Config) -> Any:
    """The run's ``jopt.models.Precision`` (``train.precision``, ``train.matmul_precision``)."""
    from jopt.models import MATMUL_PRECISIONS, PRECISIONS, precision_policy

    t = config.train
    if t.precision not in PRECISIONS:
        raise JoptError(
            f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}"
        )
    if t.matmul_precision is not None and t.matmul_precision not in MATMUL_PRECISIONS:
        raise JoptError(
            f"train.matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)} or null, "
            f"got {t.matmul_precision!r}"
        )
    return precision_policy(t.precision, t.matmul_precision)


def plateau_transform(config: Config) -> Any:
    """``jopt.reduce_on_plateau`` for ``schedule: {name: plateau, ...}``, placed last in the
    chain. Its updates only apply the current scale: the train step's ``value=`` (the training
    loss of each step) is not passed on; the runner feeds ``schedule.metric`` once per
    evaluation with ``jopt.observe_plateau`` (:func:`plateau_value` gives the value fed)."""
    from jopt.core import GradientTransformation
    from jopt.transforms import reduce_on_plateau

    s = config.schedule
    inner = reduce_on_plateau(
        factor=float(s.factor),
        patience=int(s.patience),
        cooldown=int(s.cooldown),
        min_scale=float(s.min_scale),
    )

    def update(updates, state, params=None, **extra_args):
        del extra_args  # value= is the step's training loss: the plateau ignores it
        return inner.update(updates, state, params)

    return GradientTransformation(inner.init, update)


PLATEAU_METRICS = (
    "val_loss",
    "val_accuracy",
    "train_loss",
    "train_accuracy",
    "train_eval_loss",
    "train_eval_accuracy",
)
"""The values ``schedule.metric`` may take (``train_eval_*`` needs ``train.eval_train``)."""


def plateau_value(metric: str, value: Any) -> Any:
    """What :func:`jopt.observe_plateau` is fed for ``schedule.metric`` (minimised, as optax's
    rule): the metric itself for losses, ``1 - accuracy`` (the error rate) for accuracies."""
    return 1.0 - value if metric.endswith("_accuracy") else value


def check_precision_plateau(config: Config) -> None:
    """One-line refusals of ``train.precision`` / ``train.matmul_precision`` and of
    ``schedule: plateau`` / evaluation-parameter optimizers where they cannot be exact."""
    config_precision(config)  # the names
    t, problem = config.train, config.problem.name
    if problem is not None and (t.precision != "float32" or t.matmul_precision is not None):
        raise JoptError(
            f"train.precision/matmul_precision apply to model training; test problem "
            f"{problem!r} runs in float32 (remove them)"
        )
    given = sorted({"dtype", "param_dtype"} & set(config.model.options))
    if given:
        raise JoptError(
            f"model.options.{given[0]}: set train.precision instead (float32, bf16_mixed or bf16)"
        )
    if t.precision != "float32" and config.diagnostics.sharpness_every:
        raise JoptError(
            "diagnostics.sharpness_every needs train.precision: float32 (Hessian estimates "
            "in bfloat16 are too coarse to report)"
        )
    opt = config.optimizer
    if opt.name in EVAL_PARAMS_OPTIMIZERS:
        if opt.groups:
            raise JoptError(
                f"optimizer {opt.name!r} is evaluated with parameters from its state, which "
                "optimizer.groups splits; remove the groups"
            )
        if opt.execution == "fused":
            raise JoptError(
                f"optimizer {opt.name!r} is evaluated with parameters from its per-leaf state; "
                "use optimizer.execution: auto or per_leaf, not fused"
            )
    s = config.schedule
    if s.name != "plateau":
        return
    if problem is not None:
        raise JoptError(
            f"schedule plateau follows an evaluated metric; test problem {problem!r} has none "
            "(use another schedule)"
        )
    m = s.metric
    split, _, kind = m.rpartition("_")
    if m not in PLATEAU_METRICS:
        raise JoptError(f"schedule.metric must be one of {', '.join(PLATEAU_METRICS)}, got {m!r}")
    from jopt.experiment._stream import has_split

    if split == "val" and not has_split(config, "val"):
        raise JoptError(f"schedule.metric {m!r} needs a validation split (data.val_fraction is 0)")
    if split == "train_eval" and not t.eval_train:
        raise JoptError(f"schedule.metric {m!r} needs train.eval_train: true")
    if kind == "accuracy" and config.data.task == "regression":
        raise JoptError(f"schedule.metric {m!r}: a regression task has no accuracy")
