"""Turning a config into what the training engine needs: data, model, loss, optimizer.

:func:`build_optimizer` is the one place a config becomes an optimizer: ``jopt run``,
``jopt sweep``, ``jopt lr-find``, ``jopt bench train``, ``jopt compare`` and distributed runs
all call it. The optimizer is built as

    chain(*optimizer.chain, with_hparams(opt)(learning_rate, **kwargs), schedule multiplier)

where ``opt`` is the configured jopt optimizer plus, when ``regularization.weight_decay > 0``,
decoupled weight decay ``u <- u - lr * wd * w`` on the weight matrices (Loshchilov & Hutter
2019). Every numeric hyperparameter (``adam/learning_rate``, ``adam/b1``, ...) lives in the
optimizer state (``jopt.with_hparams``), so sweeps can vmap over them. The schedule is a
multiplier with peak 1 applied after the optimizer, so the effective step size is
``learning_rate * schedule(t)`` exactly as with a scheduled learning rate.

``optimizer.execution`` says how the runner applies it (:data:`EXECUTIONS`): ``auto`` (the
default) trains packed (parameters, gradients and state in a few flat buffers, see
``jopt.fused.packed_layout``) when that is exact for the optimizer and per leaf otherwise, with
one logged line; ``packed`` refuses instead of falling back; ``per_leaf`` is the leaf-by-leaf
path; ``fused`` wraps the whole chain in the tree-form ``jopt.fuse``, refused where that is not
exact (:func:`fused_refusal`). The builder returns the same (per-leaf) transform for ``auto``,
``packed`` and ``per_leaf``: packing happens in the train step (``jopt.experiment._program``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import jax

from jopt.core.errors import JoptError
from jopt.experiment import _registry as reg
from jopt.experiment._policy import config_precision, plateau_transform
from jopt.experiment._schema import Config
from jopt.experiment._stream import SHARDS, load_sharded, stream_steps
from jopt.experiment._user_code import (
    build_model,
    check_loss_output,
    data_function,
    is_reference,
    user_loss,
)


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
    """The config's data set: a registered name or a user's data function through
    ``jopt.data.load_dataset`` with the config's splits and options; ``shards`` described, not
    loaded (``jopt.data.ShardedData``, read in batches)."""
    from jopt.data import load_dataset

    d = config.data
    if d.name == SHARDS:
        return load_sharded(config)
    return load_dataset(
        data_function(config) if is_reference(d.name) else d.name,
        task=d.task,
        seed=d.seed,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        preprocess=d.preprocess,
        **d.options,
    )


def setup(config: Config, data: Any = None) -> Setup:
    """Load the data (unless given) and build model, loss spec, batching and augmentation."""
    from jopt.data import Augment, Batching, ShardedData
    from jopt.train import LossSpec

    data = load_data(config) if data is None else data
    if is_reference(config.model.name):  # user code: linen, NNX or equinox (_user_code)
        model = build_model(config, data, config_precision(config))
    else:
        model = reg.make_model(
            config.model.name,
            num_outputs=data.num_outputs,
            precision=config_precision(config),
            **model_kwargs(config),
        )
    b = config.batching
    batching = Batching(
        strategy=b.strategy,
        batch_size=b.batch_size,
        accumulate_steps=b.accumulate_steps,
        remainder=b.remainder,
        shuffle=b.shuffle,
    )
    from jopt.experiment._checks import check_setup

    check_setup(config, data, model)  # loss/metrics fit the task, group patterns match
    loss = config.loss.name  # null: the task's own loss (LossSpec)
    r = config.regularization
    spec = LossSpec(
        task=data.task,
        num_classes=data.num_classes,
        loss=loss,
        label_smoothing=config.loss.label_smoothing,
        l1=r.l1,
        l2=r.l2,
        loss_fn=user_loss(config) if is_reference(loss) else None,
    )
    if spec.loss_fn is not None:  # traced once on shapes: per-example float losses
        check_loss_output(spec, data.num_outputs, tuple(data.y_train.shape[1:]))
    a = config.data.augmentation
    augment = Augment(
        noise_std=a.noise_std, max_shift=a.max_shift, flip=a.flip, mixup_alpha=a.mixup_alpha
    )
    augment.check(data.kind)
    if isinstance(data, ShardedData):  # each process reads its slice (_stream)
        steps_per_epoch, _ = stream_steps(batching, data.num_train, jax.process_count())
    else:
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
    if s.name == "plateau":  # a scale held in the optimizer state (plateau_transform)
        return None
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


def _hparam_sources(config: Config) -> dict[str, tuple[str, float]]:
    """``{set_hparams name: (dotted config key, value)}`` for every hyperparameter the built
    optimizer holds in its state (``jopt.with_hparams``)."""
    opt = config.optimizer
    prefix = hparam_prefix(config)
    out = {f"{prefix}/learning_rate": ("optimizer.learning_rate", float(opt.learning_rate))}
    for k, v in opt.kwargs.items():
        if isinstance(v, float):
            out[f"{prefix}/{k}"] = (f"optimizer.{k}", v)
    if config.regularization.weight_decay > 0:
        out[f"{prefix}/decoupled_weight_decay"] = (
            "regularization.weight_decay",
            float(config.regularization.weight_decay),
        )
    return out


def vmappable_values(config: Config) -> dict[str, float]:
    """Hyperparameters held in the optimizer state, by their ``jopt.set_hparams`` name."""
    return {name: value for name, (_, value) in _hparam_sources(config).items()}


def sweepable_keys(config: Config) -> tuple[str, ...]:
    """Dotted config keys whose values live only in the optimizer state, so configs that differ
    only in them share one compiled (vmapped) program. Parameter groups derive their own
    hyperparameters (``lr_mult``...) from the base values when built, so then there are none."""
    if config.optimizer.groups:
        return ()
    return tuple(key for key, _ in _hparam_sources(config).values())


def structure_key(config: Config) -> str:
    """What must be equal for two configs to share one compiled (vmapped) program: the whole
    config except its name, seed, sweep and output sections and the :func:`sweepable_keys`
    values (weight decay only as on/off: it adds a transform to the chain)."""
    import json

    from jopt.experiment._schema import to_dict

    raw = to_dict(config)
    raw.pop("name"), raw.pop("seed"), raw.pop("sweep")
    raw["output"] = {}
    for key in sweepable_keys(config):
        section, field = key.split(".")
        raw[section].pop(field)
    if "weight_decay" not in raw["regularization"]:
        raw["regularization"]["decay_on"] = True
    return json.dumps(raw, sort_keys=True, default=str)


EXECUTIONS = ("auto", "packed", "per_leaf", "fused")


def execution_refusal(config: Config) -> str | None:
    """A one-line reason why ``optimizer.execution`` (or the retired ``optimizer.fused``) is not
    usable as written, else ``None``. Whether *packed* is exact needs the parameters, so
    ``auto``/``packed`` are resolved when the run is built (``resolve_execution``)."""
    opt = config.optimizer
    if getattr(opt, "fused", False):
        return (
            "optimizer.fused is replaced by optimizer.execution: write optimizer.execution: "
            "fused for the tree-form jopt.fuse, or leave the default (auto: packed)"
        )
    execution = getattr(opt, "execution", "auto")
    if execution not in EXECUTIONS:
        return f"optimizer.execution must be one of {', '.join(EXECUTIONS)}, got {execution!r}"
    return None


def fused_refusal(config: Config) -> str | None:
    """Why ``optimizer.execution: fused`` is not exact for ``config`` (``None`` when it is);
    also the :func:`execution_refusal` of a bad ``execution`` value or ``fused: true``.

    ``jopt.fuse`` runs the chain on packed buffers (one per dtype and leaf class). Parameter
    groups, freezing, the weight-decay mask and LAMB's trust ratio are exact there (they go
    through ``jopt.core.leaf_labels`` / ``leaf_norms``); a transform that reads a leaf's shape
    or norm by itself is not. The answer is a probe: the configured optimizer, fused and not,
    takes three steps on a tree of three leaves (ranks 1 to 3, scales 1e-3 to 10); any
    difference beyond float32 rounding (or an error only the fused one raises) refuses the
    config with one line. It runs only for ``execution: fused``, cached per optimizer setup.
    """
    why = execution_refusal(config)
    if why is not None or config.optimizer.execution != "fused":
        return why
    from jopt.experiment._schema import to_dict

    raw = to_dict(config)
    key = json.dumps(
        [raw["optimizer"], raw["schedule"], raw["regularization"]["weight_decay"]],
        sort_keys=True,
        default=str,
    )
    if key not in _PROBED:
        _PROBED[key] = _probe_fused(config)
    return _PROBED[key]


_PROBED: dict[str, str | None] = {}


def _probe_fused(config: Config) -> str | None:
    import jax.numpy as jnp
    import numpy as np

    from jopt.core import apply_updates, call_update

    rng = np.random.default_rng(0)
    shapes = {"a": (5,), "w": (4, 3), "k": (2, 3, 2)}
    scales = {"a": 1e-3, "w": 1.0, "k": 10.0}

    def tree():
        draw = {n: rng.normal(size=s) * scales[n] for n, s in shapes.items()}
        return {n: jnp.asarray(x, jnp.float32) for n, x in draw.items()}

    params, grads = tree(), [tree() for _ in range(3)]

    def trajectory(fused: bool):
        opt = dataclasses.replace(config.optimizer, execution="fused" if fused else "per_leaf")
        tx = _build(dataclasses.replace(config, optimizer=opt), 10, 100, None)
        p, state, out = params, tx.init(params), []
        for g in grads:
            u, state = call_update(tx, g, state, p, value=jnp.float32(1.0))
            p = apply_updates(p, u)
            out.append(p)
        return out

    try:
        plain = trajectory(False)
    except Exception:  # the optimizer fails on its own; building or training reports that
        return None
    what = f"optimizer {config.optimizer.name!r}" + (
        f" with optimizer.chain [{', '.join(t.name for t in config.optimizer.chain)}]"
        if config.optimizer.chain
        else ""
    )
    try:
        fused = trajectory(True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, JoptError):  # the fused layer refuses what it cannot pack exactly
            return (
                f"optimizer.execution: fused is not exact for {what}: {first}; "
                "use optimizer.execution: auto or per_leaf"
            )
        return (
            f"optimizer.execution: fused fails for {what} ({first}); "
            "use optimizer.execution: auto or per_leaf"
        )
    for p0, p1 in zip(plain, fused, strict=True):
        for n in shapes:
            a, b = np.asarray(p0[n]), np.asarray(p1[n])
            if not np.allclose(a, b, rtol=1e-5, atol=1e-6 * scales[n]):
                return (
                    f"optimizer.execution: fused is not exact for {what}: a piece of it reads "
                    "each parameter's shape or norm, which packed buffers do not keep; use "
                    "optimizer.execution: auto or per_leaf"
                )
    return None


def default_total_steps(config: Config, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: ``epochs * steps_per_epoch``, with ``epochs`` rounded
    up from ``train.steps`` when that is set (as :func:`setup` does)."""
    spe = max(int(steps_per_epoch), 1)
    epochs = config.train.epochs
    if config.train.steps is not None:
        epochs = math.ceil(config.train.steps / spe)
    return epochs * spe


def build_optimizer(
    config: Config,
    *,
    steps_per_epoch: int = 1,
    total_steps: int | None = None,
    lr_multiplier: Any = None,
) -> Any:
    """The configured optimizer as one ``GradientTransformation``: the one config builder.

    Builds ``chain(*optimizer.chain, with_hparams(opt)(learning_rate, **kwargs), schedule)``
    (see the module docstring), with ``jopt.groups`` around ``opt`` for ``optimizer.groups``,
    decoupled weight decay for ``regularization.weight_decay`` and ``jopt.fuse`` around the
    whole for ``optimizer.execution: fused`` (refused with one line where that is not exact,
    see :func:`fused_refusal`). Other executions get the plain (per-leaf) transform.

    Args:
        config: a loaded config (``jopt.experiment.load_config``).
        steps_per_epoch: optimizer steps per epoch (the ``exponential`` schedule decays per
            epoch; a test problem has one step per "epoch").
        total_steps: the length of the schedule; default :func:`default_total_steps`.
        lr_multiplier: an extra ``count -> factor`` multiplied into the schedule (``jopt
            lr-find`` sweeps the peak learning rate with it); the effective step size is then
            ``learning_rate * schedule(t) * lr_multiplier(t)``.
    """
    why = fused_refusal(config)
    if why is not None:
        raise JoptError(why)
    total = default_total_steps(config, steps_per_epoch) if total_steps is None else total_steps
    from jopt.train import precision_optimizer

    tx = _build(config, steps_per_epoch, total, lr_multiplier)
    tx = precision_optimizer(tx, config_precision(config))  # train.precision's state dtype
    return guard_nonfinite(config, tx)


NONFINITE = ("skip", "stop", "ignore")


def guard_nonfinite(config: Config, tx: Any) -> Any:
    """``tx`` under ``train.nonfinite``: ``skip`` and ``stop`` wrap it whole (outermost) in
    ``jopt.skip_nonfinite``, so a step with a NaN/Inf gradient leaves params and state
    unchanged (the runner ends the run after more than ``train.max_consecutive_skips`` such
    steps in a row, or at the first one for ``stop``); ``ignore`` returns ``tx``."""
    t = config.train
    policy = getattr(t, "nonfinite", "ignore")
    if policy not in NONFINITE:
        raise JoptError(f"train.nonfinite must be one of {', '.join(NONFINITE)}, got {policy!r}")
    if policy == "ignore":
        return tx
    limit = t.max_consecutive_skips if policy == "skip" else 0
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise JoptError(f"train.max_consecutive_skips must be an integer >= 0, got {limit!r}")
    from jopt.combinators import skip_nonfinite

    return skip_nonfinite(tx, max_consecutive=limit)


def _build(config: Config, steps_per_epoch: int, total: int, lr_multiplier: Any) -> Any:
    from jopt.combinators import groups, with_hparams
    from jopt.core import chain
    from jopt.fused import fuse

    opt = config.optimizer
    factory = reg.optimizer_factory(opt.name)
    kwargs = dict(opt.kwargs)
    if config.regularization.weight_decay > 0:
        factory = _decoupled(factory)
        kwargs["decoupled_weight_decay"] = float(config.regularization.weight_decay)
    main = with_hparams(factory, name=opt.name)(learning_rate=float(opt.learning_rate), **kwargs)
    if opt.groups:
        # rules as the config gives them: {pattern, name?, freeze? | lr_mult / overrides}
        main = groups([dict(g) for g in opt.groups], default=main)
    parts = []
    for t in opt.chain:
        try:
            parts.append(reg.transform_factory(t.name)(**t.kwargs))
        except TypeError as e:
            raise JoptError(f"optimizer.chain: {t.name}: {e}") from None
    parts.append(main)
    mult = schedule_multiplier(config, total, steps_per_epoch)
    if lr_multiplier is not None:
        mult = _product(mult, lr_multiplier)
    if mult is not None:
        from jopt.transforms import scale_by_schedule

        parts.append(scale_by_schedule(mult))
    if config.schedule.name == "plateau":
        parts.append(plateau_transform(config))
    tx = chain(*parts) if len(parts) > 1 else main
    return fuse(tx) if opt.execution == "fused" else tx


def _product(a: Any, b: Any) -> Any:
    if a is None:
        return b

    def both(count):
        return a(count) * b(count)

    return both
