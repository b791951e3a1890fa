"""Checks that need the config's data set or model, made after the data is loaded and before
anything compiles (``jopt.experiment.setup`` runs them; so do ``jopt validate`` and a sweep's
member checks): the loss and the monitored metrics fit the data's task, every parameter
group pattern matches at least one parameter, and an NNX/equinox model is not asked for what
the runner cannot do with it (:func:`check_framework`).
"""

from __future__ import annotations

from jopt.core.errors import JoptError
from jopt.experiment import _registry as reg
from jopt.experiment._schema import Config

__all__ = ["check_framework", "check_setup", "check_task"]


def check_task(config: Config, task: str) -> None:
    """The loss and the monitored metrics fit ``task`` (the config's ``data.task`` or, when
    that is null, the loaded data set's own task); raise a one-line :class:`JoptError`."""
    name = config.loss.name
    if name is not None and ":" not in name and name not in reg.TASK_LOSSES[task]:
        raise JoptError(
            f"loss.name {name!r} does not fit the {task} task of data {config.data.name!r} "
            f"(allowed: {', '.join(reg.TASK_LOSSES[task])}, or null for "
            f"{reg.TASK_LOSS[task]}; set data.task if the task is wrong)"
        )
    if task == "regression":
        if config.loss.label_smoothing > 0:
            raise JoptError(
                f"loss.label_smoothing applies to classification; data {config.data.name!r} "
                "is a regression task"
            )
        es = config.regularization.early_stopping
        if es.patience > 0 and es.metric in reg.ACCURACY_METRICS:
            raise JoptError(
                f"regularization.early_stopping.metric {es.metric!r} is not computed for the "
                f"regression task of data {config.data.name!r} (use val_loss or train_loss)"
            )


def check_framework(config: Config, model) -> None:
    """What the runner cannot yet do exactly with a flax NNX or equinox model
    (``jopt.models.ModelAdapter``) is refused in one line: data-parallel runs (their sharding
    wrapper is linen's ``init``/``apply``)."""
    from jopt.models import ModelAdapter

    if not isinstance(model, ModelAdapter) or model.framework == "linen":
        return
    d = config.distributed
    if d.data != 1 or d.coordinator_address:
        raise JoptError(
            f"distributed runs train flax linen models; model {model.name} is {model.framework} "
            "(set distributed.data: 1)"
        )


def check_setup(config: Config, data, model) -> None:
    """Checks that need the loaded data and the model, made before anything compiles: the
    loss and metrics fit the data's task, and every ``optimizer.groups`` pattern matches at
    least one parameter (on the parameter shapes from ``jax.eval_shape``: nothing runs)."""
    check_task(config, data.task)
    check_framework(config, model)
    rules = config.optimizer.groups
    if not rules:
        return
    import jax
    import jax.numpy as jnp

    from jopt.combinators import groups
    from jopt.core import identity
    from jopt.models import ModelAdapter

    sample = jax.ShapeDtypeStruct((1, *data.input_shape), jnp.float32)
    if isinstance(model, ModelAdapter):  # flax NNX, equinox
        params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)[0], sample)
    else:
        keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        variables = jax.eval_shape(lambda x: model.init(keys, x, train=False), sample)
        params = variables["params"]
    named = [
        {"name": str(r.get("name", f"rule{i}")), "pattern": r["pattern"], "freeze": True}
        for i, r in enumerate(rules)
    ]
    try:
        labels = set(groups(named, default=identity()).assign(params))
    except JoptError as e:
        raise JoptError(f"optimizer.groups: {e}") from None
    for i, r in enumerate(named):
        if r["name"] not in labels:
            paths = [
                "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
                for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
            ]
            raise JoptError(
                f"optimizer.groups[{i}].pattern {r['pattern']!r} matches no parameter "
                f"(parameters: {', '.join(paths[:12])}{' ...' if len(paths) > 12 else ''})"
            )
