"""The experiment config schema: typed dataclasses, each field with its one default.

A YAML file is loaded into :class:`Config` by :func:`jopt.experiment.load_config`. This module
is the only place a config default lives (the loader, the runner and the docs read it from
here), except where a lower layer owns the value: the ``distributed`` section's defaults are
``jopt.distributed.DistributedSpec``'s.
Fields whose type is ``dict[str, Any]`` are free-form options passed on to the layer that owns
them (a dataset's or model's extra keyword arguments).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from jopt.distributed import DistributedSpec

_SPEC = DistributedSpec()

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class Range:
    """The values a numeric field may take (checked by the loader, shown in ``docs/config.md``).

    Every float field is also finite (NaN and inf are refused); an integer field without a
    range is a count within int32."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, v: float) -> bool:
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return self.high is None or (v < self.high if self.high_open else v <= self.high)

    def describe(self) -> str:
        def f(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        if self.low is not None and self.high is not None:
            lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {lo}{f(self.low)}, {f(self.high)}{hi}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {f(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {f(self.high)}"
        return "finite"


COUNT = Range(-(2**31), INT32_MAX)  # the default range of an integer field


def num(
    default: Any = None,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A numeric field with its range (a list field's range, in ``metadata``, is its items')."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open)})


def field_range(f: dataclasses.Field) -> Range | None:
    return f.metadata.get("range")


@dataclass
class AugmentationConfig:
    """Training-time augmentation, applied on device to training batches only
    (``jopt.data.Augment``): Gaussian input noise, random shifts of up to ``max_shift``
    (0, 1 or 2) positions for images and signals, horizontal flips, mixup."""

    noise_std: float = num(0.0, 0)
    max_shift: int = num(0, 0, 2)
    flip: bool = False
    mixup_alpha: float = num(0.0, 0)


@dataclass
class DataConfig:
    """Which dataset, how it is split and preprocessed. ``seed`` drives the split (and synthetic
    data); it is separate from the run's ``seed`` so that runs over several seeds share data.
    ``task``: ``classification`` or ``regression`` (``jopt.data.load_dataset``'s ``task``);
    null keeps a built-in set's own task and means classification for a file. It is never
    guessed from the labels.

    ``name`` may be your own data function, ``"package.module:function"``, called as
    ``function(seed=data.seed, **data.options)`` (``seed`` only if it takes one; the same seed
    must give the same data). It returns ``(x, y)`` arrays (the whole set: split and
    preprocessed here, as a built-in set), or a dict with ``x``, ``y`` and optionally
    ``x_val``/``y_val`` (then ``val_fraction`` is not used), ``x_test``/``y_test`` (then
    ``test_fraction`` is not used), ``task``, ``num_classes`` and ``kind`` (``tabular``,
    ``signal``, ``image``). Labels are class indices 0..K-1 unless the task is regression."""

    name: str = "digits"
    task: str | None = None
    seed: int = num(0, 0, UINT32_MAX)
    val_fraction: float = num(0.2, 0, 1, high_open=True)
    test_fraction: float = num(0.25, 0, 1, high_open=True)
    preprocess: str = "standardize"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Which model; ``options`` holds model-specific keyword arguments.

    ``name`` may be your own model, ``"package.module:Name"``: a flax linen, flax NNX or
    equinox ``Module`` class, or a function returning a module instance. It is called with
    ``options`` plus, where its signature names them, ``num_outputs`` (classes or regression
    outputs), ``input_shape`` (one example's shape), ``dropout`` (``regularization.dropout``)
    and ``rngs`` (``nnx.Rngs``) or ``key`` (a PRNG key) drawn from the run's seed. Linen
    modules take ``(x, train)``; NNX modules ``(x)`` with ``train()``/``eval()``; equinox
    modules one example, ``(x[, state], *, key)``. ``hidden`` and ``activation`` are for the
    built-in models only."""

    name: str = "mlp"
    hidden: list[int] = field(
        default_factory=lambda: [128], metadata={"range": Range(1, INT32_MAX)}
    )
    activation: str = "relu"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProblemConfig:
    """A classical test problem from ``jopt.numerics`` as the objective, in place of data, model
    and loss: ``problem: {name: rosenbrock}`` (``jopt.numerics.list_problems()``). ``options``
    go to ``jopt.numerics.get_problem``. The run takes ``train.steps`` (else ``train.epochs``)
    optimizer steps; ``data``, ``model``, ``loss`` and ``batching`` are not used."""

    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """``name``: ``cross_entropy`` (classification), ``mse`` or ``huber`` (regression); null
    is the task's own loss (``cross_entropy`` or ``mse``). A loss that does not fit the task is
    an error, as is ``label_smoothing`` (cross-entropy only) under another loss.

    ``name`` may be your own loss, ``"package.module:function"``, called as
    ``function(outputs, targets, **options)`` and returning per-example losses of shape
    ``(b,)`` (jopt takes the weighted mean, so padding, accumulation and evaluation stay
    exact). ``targets`` are one-hot floats ``(b, K)`` for classification (label smoothing
    and mixup applied) and the float targets for regression. ``options`` is for such a
    loss only."""

    name: str | None = None
    label_smoothing: float = num(0.0, 0, 1, high_open=True)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransformConfig:
    """One extra transform placed before the optimizer, e.g. ``{name: clip_by_global_norm,
    max_norm: 1.0}``. Keys other than ``name`` are the factory's keyword arguments."""

    name: str = "clip_by_global_norm"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """Any jopt optimizer by name. Keys other than the fields below are the factory's keyword
    arguments (``b1``, ``momentum``, ...), checked against its signature.

    ``chain`` lists extra transforms applied to the gradient first (clipping, noise); ``groups``
    holds parameter groups (passed to ``jopt.groups``).
    ``execution``: ``auto`` (packed parameters, gradients and state when that is exact for the
    optimizer, else per leaf with a logged line), ``packed`` (refused where not exact),
    ``per_leaf`` or ``fused`` (the tree-form ``jopt.fuse``); summary.json records the resolved
    one. ``fused`` is retired: ``fused: true`` is refused with a pointer to ``execution``.
    """

    name: str = "adam"
    learning_rate: float = num(1e-3, 0)
    execution: str = "auto"
    fused: bool = False
    chain: list[TransformConfig] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    """A learning-rate multiplier over training steps, peak 1 (the optimizer's learning rate).

    ``constant``; ``cosine`` (to ``end_factor`` over all steps); ``warmup_cosine`` (linear warm-up
    over ``warmup_steps``, then cosine); ``step`` (multiply by ``decay_rate`` at each fraction of
    training in ``boundaries``); ``exponential`` (``decay_rate`` per epoch); ``warmup``
    (linear warm-up, then constant); ``plateau`` (``jopt.reduce_on_plateau``, optax's rule:
    multiply by ``factor`` when ``metric`` has not improved for ``patience`` evaluations, then
    wait ``cooldown`` evaluations, never below ``min_scale``; ``metric`` is ``train_loss`` or an
    evaluated ``<split>_<metric>`` such as ``val_loss`` or ``val_accuracy``; an accuracy enters
    the rule as the error rate ``1 - accuracy``). It counts evaluations (``train.eval_every``).
    """

    name: str = "constant"
    warmup_steps: int = num(0, 0, INT32_MAX)
    end_factor: float = num(0.0, 0)
    decay_rate: float = num(0.1, 0)
    boundaries: list[float] = field(
        default_factory=lambda: [0.5, 0.75], metadata={"range": Range(0, 1, True, True)}
    )
    factor: float = num(0.1, 0, 1, low_open=True, high_open=True)
    patience: int = num(10, 1, INT32_MAX)
    cooldown: int = num(0, 0, INT32_MAX)
    min_scale: float = num(0.0, 0, 1)
    metric: str = "val_loss"


@dataclass
class BatchingConfig:
    """``full`` (one step per epoch on the whole set), ``minibatch`` (``batch_size``),
    ``stochastic`` (batch size 1) or ``accumulate`` (``accumulate_steps`` micro-batches of
    ``batch_size`` per optimizer step). ``remainder``: ``drop`` the last partial batch of each
    shuffled epoch, or ``pad`` it (masked). ``eval_batch_size``: evaluation runs in chunks of
    this many examples (bounds its memory; the metrics do not depend on it)."""

    strategy: str = "minibatch"
    batch_size: int = num(32, 1, INT32_MAX)
    accumulate_steps: int = num(1, 1, INT32_MAX)
    remainder: str = "drop"
    shuffle: bool = True
    eval_batch_size: int = num(1024, 1, INT32_MAX)


@dataclass
class EarlyStoppingConfig:
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs
    (0 disables), as ``jopt.train.EarlyStopping``. ``mode``: ``min`` or ``max``; by default
    losses are minimised and accuracies maximised (``jopt.train.METRIC_MODES``)."""

    metric: str = "val_loss"
    patience: int = num(0, 0, INT32_MAX)
    mode: str | None = None
    min_delta: float = num(0.0, 0)
    restore_best: bool = True


@dataclass
class RegularizationConfig:
    """``l1`` and ``l2`` are added to the loss; ``weight_decay`` is decoupled (AdamW-style,
    scaled by the learning rate); ``dropout`` is the rate used by the model."""

    l1: float = num(0.0, 0)
    l2: float = num(0.0, 0)
    weight_decay: float = num(0.0, 0)
    dropout: float = num(0.0, 0, 1, high_open=True)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class TrainConfig:
    """``epochs`` unless ``steps`` is set (then training stops after that many optimizer steps,
    rounded up to whole epochs). Evaluate every ``eval_every`` epochs; checkpoint every
    ``checkpoint_every`` epochs (0: only at the end); with sharded data (``data.name: shards``)
    also every ``checkpoint_every_steps`` optimizer steps within an epoch (0: off; the epoch
    resumes at the same example). ``eval_train`` also evaluates the training split in eval
    mode (``train_eval_*``: no dropout or augmentation), for train/test gaps.
    ``nonfinite``: ``skip`` (a step with a NaN/Inf gradient leaves params and state unchanged;
    the run ends as ``diverged`` after more than ``max_consecutive_skips`` in a row), ``stop``
    (diverged at the first non-finite loss or gradient) or ``ignore``.
    ``precision``: ``float32``, ``bf16_mixed`` (bfloat16 activations and matmuls, float32 master
    parameters, gradients and optimizer state) or ``bf16`` (bfloat16 parameters too; optimizer
    state float32), as ``jopt.models.Precision``; losses and metrics are float32 under each.
    ``matmul_precision``: ``default``, ``high`` or ``highest`` (``jax.default_matmul_precision``;
    null: ``highest`` for float32, ``default`` for the bfloat16 policies). summary.json records
    the resolved choice."""

    epochs: int = num(20, 1, INT32_MAX)
    steps: int | None = num(None, 1, INT32_MAX)
    eval_every: int = num(1, 1, INT32_MAX)
    checkpoint_every: int = num(0, 0, INT32_MAX)
    checkpoint_every_steps: int = num(0, 0, INT32_MAX)
    eval_train: bool = False
    nonfinite: str = "skip"
    max_consecutive_skips: int = 10
    precision: str = "float32"
    matmul_precision: str | None = None


@dataclass
class ProtocolConfig:
    """``jopt sweep --protocol``: pick the best grid point by ``metric`` (on validation), then
    re-run it with ``seeds`` seeds and report mean ± std."""

    metric: str = "val_accuracy"
    seeds: int = num(5, 1, INT32_MAX)


@dataclass
class SweepConfig:
    """``grid`` maps dotted config keys to value lists; the grid is crossed with ``seeds``
    seeds (``seed``, ``seed + 1``, ...)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: int = num(1, 1, INT32_MAX)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)


@dataclass
class DiagnosticsConfig:
    """Numerical diagnostics computed by ``jopt.numerics`` during training (0 disables).
    ``sharpness_every``: top Hessian eigenvalue every that many epochs."""

    sharpness_every: int = num(0, 0, INT32_MAX)
    sharpness_iters: int = num(20, 1, INT32_MAX)


@dataclass
class DistributedConfig:
    """Data parallelism via ``jopt.distributed`` (its ``setup`` reads this section).

    ``data``: devices on the data axis (1: off, -1: all devices); ``zero``: 1 shards the
    optimizer state (ZeRO-1); the rest configures a multi-process job. The defaults are
    ``jopt.distributed.DistributedSpec``'s, the layer that owns them."""

    data: int = num(_SPEC.data, -1, INT32_MAX)
    zero: int = num(_SPEC.zero, 0, 1)
    coordinator_address: str | None = _SPEC.coordinator_address
    num_processes: int | None = _SPEC.num_processes
    process_id: int | None = _SPEC.process_id
    local_devices: int = _SPEC.local_devices


@dataclass
class OutputConfig:
    """Where and what to write."""

    runs_dir: str = "runs"
    plots: bool = True
    checkpoints: bool = True
    progress: bool = True
    # TensorBoard event files in <run_dir>/tensorboard (needs the `tensorboard` extra)
    tensorboard: bool = False


@dataclass
class Config:
    """A whole experiment. ``jopt run`` is a pure function of this (and the machine).

    ``code_path``: directories searched (before the current directory) for the modules that
    ``data.name``, ``model.name`` or ``loss.name`` name as ``"module:attribute"``; relative
    ones are relative to the config file. Empty: the config file's directory, which the
    loader then writes here (absolute), so a run directory's ``config.yaml`` finds the code."""

    name: str = "experiment"
    seed: int = num(0, 0, UINT32_MAX)
    code_path: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# Sections whose unknown keys are keyword arguments stored in a ``kwargs`` field rather than
# errors: the optimizer's hyperparameters and an extra transform's arguments.
OPEN_SECTIONS = (OptimizerConfig, TransformConfig)


def to_dict(obj: Any) -> Any:
    """The plain-YAML form of a config (``kwargs`` flattened back into its section)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "kwargs" and isinstance(obj, OPEN_SECTIONS):
                out.update({k: to_dict(v) for k, v in value.items()})
            else:
                out[f.name] = to_dict(value)
        return out
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
