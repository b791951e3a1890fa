"""Turning a config into what the training engine needs: data, model, loss, optimizer.

The optimizer is built as

    chain(*optimizer.chain, with_hparams(opt)(learning_rate, **kwargs), schedule multiplier)

where ``opt`` is the configured jopt optimizer plus, when ``regularization.weight_decay > 0``,
decoupled weight decay ``u <- u - lr * wd * w`` on the weight matrices (Loshchilov & Hutter
2019). Every numeric hyperparameter (``adam/learning_rate``, ``adam/b1``, ...) lives in the
optimizer state (``jopt.with_hparams``), so sweeps can vmap over them. The schedule is a
multiplier with peak 1 applied after the optimizer, so the effective step size is
``learning_rate * schedule(t)`` exactly as with a scheduled learning rate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax

from jopt.core.errors import JoptError
from jopt.experiment import _registry as reg
from jopt.experiment._schema import Config


def model_kwargs(config: Config) -> dict[str, Any]:
    """The model's keyword arguments: ``hidden``/``activation`` where the model has them, the
    dropout rate from ``regularization.dropout``, and ``model.options`` verbatim."""
    fields = reg.model_fields(config.model.name)
    out: dict[str, Any] = {}
    if "hidden" in fields:
        out["hidden"] = tuple(config.model.hidden)
    if "activation" in fields:
        out["activation"] = config.model.activation
    if "dropout" in fields and config.regularization.dropout:
        out["dropout"] = config.regularization.dropout
    out.update(config.model.options)
    return out


@dataclasses.dataclass
class Setup:
    """Everything a run needs that does not depend on the seed-dependent state."""

    data: Any  # jopt.data.Dataset
    model: Any
    spec: Any  # jopt.train.LossSpec
    batching: Any  # jopt.data.Batching
    augment: Any  # jopt.data.Augment
    steps_per_epoch: int
    epochs: int


def load_data(config: Config):
    from jopt.data import load_dataset

    d = config.data
    return load_dataset(
        d.name,
        seed=d.seed,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        preprocess=d.preprocess,
        **d.options,
    )


def setup(config: Config, data: Any = None) -> Setup:
    """Load the data (unless given) and build model, loss spec, batching and augmentation."""
    from jopt.data import Augment, Batching
    from jopt.train import LossSpec

    data = load_data(config) if data is None else data
    model = reg.make_model(config.model.name, num_outputs=data.num_outputs, **model_kwargs(config))
    b = config.batching
    batching = Batching(
        strategy=b.strategy,
        batch_size=b.batch_size,
        accumulate_steps=b.accumulate_steps,
        remainder=b.remainder,
        shuffle=b.shuffle,
    )
    loss = config.loss.name
    if data.task == "regression" and loss == "cross_entropy":
        loss = "mse"  # the default loss adapts to the task
    r = config.regularization
    spec = LossSpec(
        task=data.task,
        num_classes=data.num_classes,
        loss=loss,
        label_smoothing=config.loss.label_smoothing,
        l1=r.l1,
        l2=r.l2,
    )
    a = config.data.augmentation
    augment = Augment(
        noise_std=a.noise_std, max_shift=a.max_shift, flip=a.flip, mixup_alpha=a.mixup_alpha
    )
    augment.check(data.kind)
    steps_per_epoch = batching.steps_per_epoch(len(data.y_train))
    epochs = config.train.epochs
    if config.train.steps is not None:
        epochs = math.ceil(config.train.steps / steps_per_epoch)
    return Setup(data, model, spec, batching, augment, steps_per_epoch, epochs)


def schedule_multiplier(config: Config, total_steps: int, steps_per_epoch: int):
    """The learning-rate multiplier ``count -> factor`` (peak 1) named by ``schedule.name``."""
    from jopt import schedules

    s = config.schedule
    total = max(int(total_steps), 1)
    warm = min(int(s.warmup_steps), total - 1)
    if s.name == "constant":
        return None
    if s.name == "cosine":
        return schedules.cosine_decay(1.0, total, alpha=s.end_factor)
    if s.name == "warmup_cosine":
        return schedules.warmup_cosine_decay(0.0, 1.0, warm, total, end_value=s.end_factor)
    if s.name == "warmup":
        return schedules.linear(0.0, 1.0, max(warm, 1)) if warm else None
    if s.name == "step":
        bounds = {max(1, round(b * total)): s.decay_rate for b in s.boundaries}
        return schedules.piecewise_constant(1.0, bounds)
    if s.name == "exponential":
        return schedules.exponential_decay(1.0, max(steps_per_epoch, 1), s.decay_rate)
    raise JoptError(f"unknown schedule {s.name!r}; allowed: {', '.join(reg.SCHEDULES)}")


def _decoupled(factory):
    """``factory`` plus decoupled weight decay on weight matrices, scaled by the learning rate."""
    from jopt.core import chain
    from jopt.transforms import add_decayed_weights

    def optimizer(learning_rate, decoupled_weight_decay=0.0, **kwargs):
        mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
        return chain(
            factory(learning_rate=learning_rate, **kwargs),
            add_decayed_weights(-learning_rate * decoupled_weight_decay, mask=mask),
        )

    optimizer.__name__ = factory.__name__
    return optimizer


def hparam_prefix(config: Config) -> str:
    """Where the optimizer's hyperparameters are named in the state: ``adam``, or
    ``groups/default/adam`` when parameter groups wrap it (``jopt.groups``)."""
    name = config.optimizer.name
    return f"groups/default/{name}" if config.optimizer.groups else name


def lr_name(config: Config) -> str:
    return f"{hparam_prefix(config)}/learning_rate"


def vmappable_values(config: Config) -> dict[str, float]:
    """Hyperparameters held in the optimizer state, by their ``jopt.set_hparams`` name."""
    opt = config.optimizer
    prefix = hparam_prefix(config)
    out = {f"{prefix}/learning_rate": float(opt.learning_rate)}
    for k, v in opt.kwargs.items():
        if isinstance(v, float):
            out[f"{prefix}/{k}"] = v
    if config.regularization.weight_decay > 0:
        out[f"{prefix}/decoupled_weight_decay"] = float(config.regularization.weight_decay)
    return out


def build_optimizer(config: Config, total_steps: int, steps_per_epoch: int):
    """The configured optimizer as one gradient transformation; see the module docstring."""
    import jopt
    from jopt.core import chain

    opt = config.optimizer
    factory = reg.optimizer_factory(opt.name)
    kwargs = dict(opt.kwargs)
    if config.regularization.weight_decay > 0:
        factory = _decoupled(factory)
        kwargs["decoupled_weight_decay"] = float(config.regularization.weight_decay)
    with_hparams = getattr(jopt, "with_hparams", None)
    if with_hparams is None:  # combinators not available: a plain, non-sweepable optimizer
        main = factory(learning_rate=opt.learning_rate, **kwargs)
    else:
        main = with_hparams(factory, name=opt.name)(
            learning_rate=float(opt.learning_rate), **kwargs
        )
    if opt.groups:
        groups = getattr(jopt, "groups", None)
        if groups is None or with_hparams is None:
            raise JoptError("optimizer.groups needs jopt.groups and jopt.with_hparams")
        # rules as the config gives them: {pattern, name?, freeze? | lr_mult / overrides}
        main = groups([dict(g) for g in opt.groups], default=main)
    parts = []
    for t in opt.chain:
        try:
            parts.append(reg.transform_factory(t.name)(**t.kwargs))
        except TypeError as e:
            raise JoptError(f"optimizer.chain: {t.name}: {e}") from None
    parts.append(main)
    mult = schedule_multiplier(config, total_steps, steps_per_epoch)
    if mult is not None:
        from jopt.transforms import scale_by_schedule

        parts.append(scale_by_schedule(mult))
    tx = chain(*parts) if len(parts) > 1 else main
    if opt.fused:
        tx = jopt.fuse(tx)
    return tx, mult
