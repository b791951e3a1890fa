"""Checks on a typed config that need the registries or value ranges.

Each failed check raises :class:`jopt.JoptError` with one line naming the key, the value and
what is allowed. Nothing is created on disk before these pass.
"""

from __future__ import annotations

import copy

from jopt.core.errors import JoptError
from jopt.experiment import _registry as reg
from jopt.experiment._checks import check_task
from jopt.experiment._config_optimizers import check_fits
from jopt.experiment._kwargs import check_group_rules, check_kwargs, finite_everywhere
from jopt.experiment._parse import build_section, closest, set_dotted
from jopt.experiment._paths import check_data_files, check_output_dir
from jopt.experiment._schema import UINT32_MAX, Config, to_dict
from jopt.experiment._stream import SHARDS, check_checkpoint_steps, check_sharded, has_split
from jopt.experiment._tracker import check_tensorboard
from jopt.experiment._user_code import check_references, is_reference


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


def _transform_factory(i: int, name: str):
    try:
        return reg.transform_factory(name)
    except JoptError:
        names = reg.transform_names()
        raise JoptError(
            f"optimizer.chain[{i}].name: unknown transform {name!r}"
            f"{closest(name, [*names, *reg.optax_transform_names()])} "
            "(a jopt transform or combinator, or an optax transform; see jopt list)"
        ) from None


def validate_optimizer(config: Config) -> None:
    opt = config.optimizer
    if opt.name in reg.HELPERS:
        what = reg.HELPERS[opt.name]
        raise JoptError(f"optimizer.name: {opt.name!r} is not an optimizer: {what}")
    try:
        factory = reg.optimizer_factory(opt.name)
    except JoptError:
        raise JoptError(
            f"optimizer.name: unknown optimizer {opt.name!r}"
            f"{closest(opt.name, reg.optimizer_names())} (see jopt list)"
        ) from None
    fixed = ("name", "learning_rate", "execution", "fused", "chain", "groups", "kwargs")
    for key in opt.kwargs:
        if key in fixed:
            raise JoptError(f"optimizer.{key} is reserved")
    check_kwargs("optimizer", factory, opt.kwargs)
    names, _ = reg.signature_params(factory)
    if "learning_rate" not in names:
        raise JoptError(f"optimizer {opt.name!r} takes no learning_rate; it cannot be configured")
    for i, t in enumerate(opt.chain):
        check_kwargs(f"optimizer.chain[{i}]", _transform_factory(i, t.name), t.kwargs)
    check_group_rules(opt.groups, factory)
    check_fits(config)  # lbfgs / sam / sophia re-evaluate the objective: what that needs
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


def validate_config(config: Config, *, paths: bool = True) -> None:
    """Raise :class:`JoptError` for the first problem found in ``config``.

    Types and numeric ranges were checked when the config was built (``_parse``, from the
    ranges in ``_schema``); here come names, combinations and, with ``paths``, what the run
    will touch on disk: the output directory must be writable and the data files readable
    (read-only checks; nothing is created)."""
    if not config.name or any(c in config.name for c in "/\\"):
        raise JoptError(f"name must be a non-empty string without slashes, got {config.name!r}")

    for key, options in (
        ("data.options", config.data.options),
        ("model.options", config.model.options),
        ("problem.options", config.problem.options),
    ):
        finite_everywhere(key, options)  # free-form options: at least no NaN/inf

    d = config.data
    if d.name in reg.problem_names():
        raise JoptError(
            f"data.name {d.name!r} is a test problem, not a data set: write "
            f"problem: {{name: {d.name}}} (data, model and loss are then not used)"
        )
    if d.name == SHARDS:  # Grain-sharded data, streamed (_stream)
        check_sharded(config, paths)
    elif not d.name.lower().endswith((".npz", ".csv")) and not is_reference(d.name):
        _one_of("data.name", d.name, reg.dataset_names(), "dataset")
    check_checkpoint_steps(config)
    if d.task is not None:
        _one_of("data.task", d.task, reg.TASKS, "task")
    if "task" in d.options:
        raise JoptError("data.options.task: write data.task instead (the data set's task)")
    problem = config.problem.name
    if problem is not None:
        _one_of("problem.name", problem, reg.problem_names(), "test problem")
    if d.val_fraction + d.test_fraction >= 1.0:
        raise JoptError(
            "data.val_fraction + data.test_fraction must be < 1 "
            f"(got {d.val_fraction} + {d.test_fraction})"
        )
    _one_of("data.preprocess", d.preprocess, reg.preprocess_names())

    m = config.model
    if problem is None and not is_reference(m.name):
        _one_of("model.name", m.name, reg.model_names(), "model")
    _one_of("model.activation", m.activation, reg.activation_names())
    if problem is None:
        check_references(config)  # user code: imported, signatures checked (_user_code)
    if problem is None and not is_reference(m.name):
        from jopt.experiment._build import model_kwargs

        try:
            reg.make_model(m.name, num_outputs=2, **model_kwargs(config))
        except JoptError as e:
            raise JoptError(f"model: {e}") from None

    loss = config.loss
    if loss.name is not None and not is_reference(loss.name):
        _one_of("loss.name", loss.name, reg.loss_names(), "loss")
    user_loss = is_reference(loss.name)
    if loss.label_smoothing > 0 and loss.name not in (None, "cross_entropy") and not user_loss:
        raise JoptError(
            f"loss.label_smoothing applies to cross_entropy only; loss.name is {loss.name!r} "
            "(set label_smoothing: 0)"
        )
    if d.task is not None and problem is None:
        check_task(config, d.task)

    from jopt.experiment._policy import check_precision_plateau

    check_precision_plateau(config)  # train.precision, schedule: plateau
    _one_of("schedule.name", config.schedule.name, reg.SCHEDULES, "schedule")
    validate_optimizer(config)

    b = config.batching
    _one_of("batching.strategy", b.strategy, reg.BATCHING)
    _one_of("batching.remainder", b.remainder, reg.REMAINDERS)

    es = config.regularization.early_stopping
    _one_of("regularization.early_stopping.metric", es.metric, reg.METRICS)
    if es.mode is not None:
        _one_of("regularization.early_stopping.mode", es.mode, ("min", "max"), "mode")
    if es.patience > 0 and es.metric.startswith("val_") and not has_split(config, "val"):
        raise JoptError(
            f"regularization.early_stopping.metric {es.metric!r} needs a validation split "
            "(data.val_fraction is 0)"
        )

    t = config.train
    nonfinite = getattr(t, "nonfinite", None)
    if nonfinite is not None:
        _one_of("train.nonfinite", nonfinite, ("skip", "stop", "ignore"), "policy")
        _at_least("train.max_consecutive_skips", t.max_consecutive_skips, 0)

    sw = config.sweep
    _one_of("sweep.protocol.metric", sw.protocol.metric, reg.METRICS)
    last_seed = config.seed + max(sw.seeds, sw.protocol.seeds) - 1
    if last_seed > UINT32_MAX:
        raise JoptError(
            f"seed + sweep seeds must stay within uint32 (<= {UINT32_MAX}); the last seed "
            f"would be {last_seed}"
        )
    validate_sweep_keys(config)

    if config.distributed.data == 0:
        raise JoptError("distributed.data must be -1 (all devices) or a positive count, got 0")
    if config.regularization.weight_decay > 0 and "weight_decay" in config.optimizer.kwargs:
        raise JoptError(
            "set either regularization.weight_decay (decoupled, any optimizer) or "
            "optimizer.weight_decay, not both"
        )
    if config.output.tensorboard:
        check_tensorboard(problem)
    if paths:
        check_output_dir("output.runs_dir", config.output.runs_dir)
        if problem is None:
            check_data_files(config)


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
                member = build_section(Config, raw, "")
                if key.startswith("optimizer."):
                    validate_optimizer(member)
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
