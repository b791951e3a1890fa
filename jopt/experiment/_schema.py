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


@dataclass
class AugmentationConfig:
    """Training-time augmentation, applied on device to training batches only
    (``jopt.data.Augment``): Gaussian input noise, random shifts of up to ``max_shift``
    (0, 1 or 2) positions for images and signals, horizontal flips, mixup."""

    noise_std: float = 0.0
    max_shift: int = 0
    flip: bool = False
    mixup_alpha: float = 0.0


@dataclass
class DataConfig:
    """Which dataset, how it is split and preprocessed. ``seed`` drives the split (and synthetic
    data); it is separate from the run's ``seed`` so that runs over several seeds share data."""

    name: str = "digits"
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.25
    preprocess: str = "standardize"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Which flax model; ``options`` holds model-specific keyword arguments."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128])
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
    """``cross_entropy`` for classification, ``mse`` for regression."""

    name: str = "cross_entropy"
    label_smoothing: float = 0.0


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
    holds parameter groups (passed to ``jopt.partition`` once the combinators provide it);
    ``fused`` runs the optimizer through ``jopt.fused``.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
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
    (linear warm-up, then constant).
    """

    name: str = "constant"
    warmup_steps: int = 0
    end_factor: float = 0.0
    decay_rate: float = 0.1
    boundaries: list[float] = field(default_factory=lambda: [0.5, 0.75])


@dataclass
class BatchingConfig:
    """``full`` (one step per epoch on the whole set), ``minibatch`` (``batch_size``),
    ``stochastic`` (batch size 1) or ``accumulate`` (``accumulate_steps`` micro-batches of
    ``batch_size`` per optimizer step). ``remainder``: ``drop`` the last partial batch of each
    shuffled epoch, or ``pad`` it (masked)."""

    strategy: str = "minibatch"
    batch_size: int = 32
    accumulate_steps: int = 1
    remainder: str = "drop"
    shuffle: bool = True
    eval_batch_size: int = 1024


@dataclass
class EarlyStoppingConfig:
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs
    (0 disables), as ``jopt.train.EarlyStopping``. ``mode``: ``min`` or ``max``; by default
    losses are minimised and accuracies maximised (``jopt.train.METRIC_MODES``)."""

    metric: str = "val_loss"
    patience: int = 0
    mode: str | None = None
    min_delta: float = 0.0
    restore_best: bool = True


@dataclass
class RegularizationConfig:
    """``l1`` and ``l2`` are added to the loss; ``weight_decay`` is decoupled (AdamW-style,
    scaled by the learning rate); ``dropout`` is the rate used by the model."""

    l1: float = 0.0
    l2: float = 0.0
    weight_decay: float = 0.0
    dropout: float = 0.0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class TrainConfig:
    """``epochs`` unless ``steps`` is set (then training stops after that many optimizer steps,
    rounded up to whole epochs). Evaluate every ``eval_every`` epochs; checkpoint every
    ``checkpoint_every`` epochs (0: only at the end). ``eval_train`` also evaluates the training
    split in eval mode (``train_eval_*``: no dropout or augmentation), for train/test gaps."""

    epochs: int = 20
    steps: int | None = None
    eval_every: int = 1
    checkpoint_every: int = 0
    eval_train: bool = False


@dataclass
class ProtocolConfig:
    """``jopt sweep --protocol``: pick the best grid point by ``metric`` (on validation), then
    re-run it with ``seeds`` seeds and report mean ± std."""

    metric: str = "val_accuracy"
    seeds: int = 5


@dataclass
class SweepConfig:
    """``grid`` maps dotted config keys to value lists; the grid is crossed with ``seeds``
    seeds (``seed``, ``seed + 1``, ...)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: int = 1
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)


@dataclass
class DiagnosticsConfig:
    """Numerical diagnostics computed by ``jopt.numerics`` during training (0 disables).
    ``sharpness_every``: top Hessian eigenvalue every that many epochs."""

    sharpness_every: int = 0
    sharpness_iters: int = 20


@dataclass
class DistributedConfig:
    """Data parallelism via ``jopt.distributed`` (its ``setup`` reads this section).

    ``data``: devices on the data axis (1: off, -1: all devices); ``zero``: 1 shards the
    optimizer state (ZeRO-1); the rest configures a multi-process job. The defaults are
    ``jopt.distributed.DistributedSpec``'s, the layer that owns them."""

    data: int = _SPEC.data
    zero: int = _SPEC.zero
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


@dataclass
class Config:
    """A whole experiment. ``jopt run`` is a pure function of this (and the machine)."""

    name: str = "experiment"
    seed: int = 0
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
