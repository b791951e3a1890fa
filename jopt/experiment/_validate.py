"""Checks on a typed config that need the registries or value ranges.

Each failed check raises :class:`jopt.JoptError` with one line naming the key, the value and
what is allowed. Nothing is created on disk before these pass.
"""

from __future__ import annotations

import copy

from jopt.core.errors import JoptError
from jopt.experiment import _registry as reg
from jopt.experiment._parse import build_section, closest, set_dotted
from jopt.experiment._schema import Config, to_dict


def _one_of(key: str, value: str, allowed: list[str] | tuple[str, ...], what: str = "") -> None:
    if value not in allowed:
        what = what or key.split(".")[-1]
        raise JoptError(
            f"{key}: unknown {what} {value!r}{closest(value, list(allowed))}"
            f" (allowed: {', '.join(allowed)})"
        )


def _at_least(key: str, value: float | int | None, low: float, what: str = "") -> None:
    if value is not None and value < low:
        bound = what or (f">= {low:g}" if low != 0 else "non-negative")
        raise JoptError(f"{key} must be {bound}, got {value!r}")


def _check_kwargs(where: str, fn, given: dict, reserved: tuple[str, ...] = ()) -> None:
    names, var = reg.signature_params(fn)
    allowed = [n for n in names if n not in reserved]
    for key in given:
        if key in reserved:
            continue
        if key not in allowed and not var:
            raise JoptError(
                f"unknown key '{where}.{key}'{closest(key, allowed)} "
                f"(allowed here: {', '.join(allowed) or 'none'})"
            )


def validate_optimizer(config: Config) -> None:
    opt = config.optimizer
    factory = reg.optimizer_factory(opt.name)
    fixed = ("name", "learning_rate", "fused", "chain", "groups", "kwargs")
    for key in opt.kwargs:
        if key in fixed:
            raise JoptError(f"optimizer.{key} is reserved")
    _check_kwargs("optimizer", factory, opt.kwargs)
    names, _ = reg.signature_params(factory)
    if "learning_rate" not in names:
        raise JoptError(f"optimizer {opt.name!r} takes no learning_rate; it cannot be configured")
    _at_least("optimizer.learning_rate", opt.learning_rate, 0)
    for key, value in opt.kwargs.items():
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value < 0
            and key not in ("momentum_dtype",)
        ):
            raise JoptError(f"optimizer.{key} must be non-negative, got {value!r}")
    for i, t in enumerate(opt.chain):
        fn = reg.transform_factory(t.name)
        _check_kwargs(f"optimizer.chain[{i}]", fn, t.kwargs)
    if opt.groups:
        for i, g in enumerate(opt.groups):
            if "pattern" not in g:
                raise JoptError(
                    f"optimizer.groups[{i}] needs a 'pattern' (a glob over "
                    "parameter paths such as 'head/**')"
                )
    from jopt.experiment._build import build_optimizer, fused_refusal

    why = fused_refusal(config)
    if why is not None:
        raise JoptError(why)
    try:  # building is pure Python (no JAX work): it checks values the signatures cannot
        build_optimizer(config, steps_per_epoch=10, total_steps=100)
    except JoptError as e:
        raise JoptError(f"optimizer: {e}") from None
    except (TypeError, ValueError) as e:
        raise JoptError(f"optimizer {opt.name!r}: {e}") from None


def validate_config(config: Config) -> None:
    """Raise :class:`JoptError` for the first problem found in ``config``."""
    if not config.name or any(c in config.name for c in "/\\"):
        raise JoptError(f"name must be a non-empty string without slashes, got {config.name!r}")
    _at_least("seed", config.seed, 0)

    d = config.data
    if d.name in reg.problem_names():
        raise JoptError(
            f"data.name {d.name!r} is a test problem, not a data set: write "
            f"problem: {{name: {d.name}}} (data, model and loss are then not used)"
        )
    _one_of("data.name", d.name, reg.dataset_names(), "dataset")
    problem = config.problem.name
    if problem is not None:
        _one_of("problem.name", problem, reg.problem_names(), "test problem")
    for key in ("val_fraction", "test_fraction"):
        value = getattr(d, key)
        if not 0.0 <= value < 1.0:
            raise JoptError(f"data.{key} must be in [0, 1), got {value!r}")
    if d.val_fraction + d.test_fraction >= 1.0:
        raise JoptError(
            "data.val_fraction + data.test_fraction must be < 1 "
            f"(got {d.val_fraction} + {d.test_fraction})"
        )
    _one_of("data.preprocess", d.preprocess, reg.preprocess_names())
    _at_least("data.augmentation.noise_std", d.augmentation.noise_std, 0)
    _at_least("data.augmentation.mixup_alpha", d.augmentation.mixup_alpha, 0)
    if d.augmentation.max_shift not in (0, 1, 2):
        raise JoptError(
            f"data.augmentation.max_shift must be 0, 1 or 2, got {d.augmentation.max_shift}"
        )

    m = config.model
    if problem is None:
        _one_of("model.name", m.name, reg.model_names(), "model")
    _one_of("model.activation", m.activation, reg.activation_names())
    for i, width in enumerate(m.hidden):
        _at_least(f"model.hidden[{i}]", width, 1, "a positive integer")
    if problem is None:
        from jopt.experiment._build import model_kwargs

        try:
            reg.make_model(m.name, num_outputs=2, **model_kwargs(config))
        except JoptError as e:
            raise JoptError(f"model: {e}") from None

    _one_of("loss.name", config.loss.name, reg.loss_names(), "loss")
    if not 0.0 <= config.loss.label_smoothing < 1.0:
        raise JoptError(
            f"loss.label_smoothing must be in [0, 1), got {config.loss.label_smoothing}"
        )

    validate_optimizer(config)

    s = config.schedule
    _one_of("schedule.name", s.name, reg.SCHEDULES, "schedule")
    _at_least("schedule.warmup_steps", s.warmup_steps, 0)
    _at_least("schedule.end_factor", s.end_factor, 0)
    _at_least("schedule.decay_rate", s.decay_rate, 0)
    if any(not 0.0 < b < 1.0 for b in s.boundaries):
        raise JoptError(
            f"schedule.boundaries are fractions of training in (0, 1), got {s.boundaries}"
        )

    b = config.batching
    _one_of("batching.strategy", b.strategy, reg.BATCHING)
    _one_of("batching.remainder", b.remainder, reg.REMAINDERS)
    _at_least("batching.batch_size", b.batch_size, 1, "a positive integer")
    _at_least("batching.accumulate_steps", b.accumulate_steps, 1, "a positive integer")
    _at_least("batching.eval_batch_size", b.eval_batch_size, 1, "a positive integer")

    r = config.regularization
    for key in ("l1", "l2", "weight_decay"):
        _at_least(f"regularization.{key}", getattr(r, key), 0)
    if not 0.0 <= r.dropout < 1.0:
        raise JoptError(f"regularization.dropout must be in [0, 1), got {r.dropout}")
    es = r.early_stopping
    _one_of("regularization.early_stopping.metric", es.metric, reg.METRICS)
    _at_least("regularization.early_stopping.patience", es.patience, 0)
    if es.mode is not None:
        _one_of("regularization.early_stopping.mode", es.mode, ("min", "max"), "mode")
    _at_least("regularization.early_stopping.min_delta", es.min_delta, 0)

    t = config.train
    _at_least("train.epochs", t.epochs, 1, "a positive integer")
    _at_least("train.steps", t.steps, 1, "a positive integer")
    _at_least("train.eval_every", t.eval_every, 1, "a positive integer")
    _at_least("train.checkpoint_every", t.checkpoint_every, 0)

    _at_least("sweep.seeds", config.sweep.seeds, 1, "a positive integer")
    _one_of("sweep.protocol.metric", config.sweep.protocol.metric, reg.METRICS)
    _at_least("sweep.protocol.seeds", config.sweep.protocol.seeds, 1, "a positive integer")
    validate_sweep_keys(config)

    _at_least("diagnostics.sharpness_every", config.diagnostics.sharpness_every, 0)
    _at_least(
        "diagnostics.sharpness_iters", config.diagnostics.sharpness_iters, 1, "a positive integer"
    )
    if config.distributed.data == 0 or config.distributed.data < -1:
        raise JoptError(
            f"distributed.data must be -1 (all devices) or a positive count, "
            f"got {config.distributed.data}"
        )
    if config.distributed.zero not in (0, 1):
        raise JoptError(f"distributed.zero must be 0 or 1, got {config.distributed.zero}")
    _at_least("data.seed", d.seed, 0)
    if config.regularization.weight_decay > 0 and "weight_decay" in config.optimizer.kwargs:
        raise JoptError(
            "set either regularization.weight_decay (decoupled, any optimizer) or "
            "optimizer.weight_decay, not both"
        )


def validate_sweep_keys(config: Config) -> None:
    """Every ``sweep.grid`` key must name a config field, and every value must fit its type."""
    grid = config.sweep.grid
    if not grid:
        return
    base = to_dict(config)
    base["sweep"] = {}
    for key, values in grid.items():
        if key.split(".")[0] in ("sweep", "output"):
            raise JoptError(f"sweep.grid cannot sweep over {key!r}")
        if not isinstance(values, list) or not values:
            raise JoptError(f"sweep.grid.{key} must be a non-empty list of values, got {values!r}")
        _check_key_exists(base, key)
        for value in values:
            raw = copy.deepcopy(base)
            set_dotted(raw, key, value)
            try:
                build_section(Config, raw, "")
            except JoptError as e:
                raise JoptError(f"sweep.grid.{key}: {e}") from None


def _check_key_exists(base: dict, key: str) -> None:
    node = base
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            raise JoptError(
                f"sweep.grid: {'.'.join(parts[:i])!r} is not a section, cannot sweep over {key!r}"
            )
        if part not in node:
            # optimizer hyperparameters are open keys checked against the factory signature
            if parts[:i] == ["optimizer"] and i == len(parts) - 1:
                names, var = reg.signature_params(reg.optimizer_factory(base["optimizer"]["name"]))
                if part in names or var:
                    return
                raise JoptError(f"sweep.grid: unknown key {key!r}{closest(part, names)}")
            options = list(node)
            raise JoptError(
                f"sweep.grid: unknown key {key!r}{closest(part, options)} "
                f"(allowed here: {', '.join(options)})"
            )
        node = node[part]
