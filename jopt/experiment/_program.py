"""The runner's set-up, one function per stage: build, initialise, place, compile.

:func:`build_program` turns a config into pure functions (the optimizer from
:func:`jopt.experiment.build_optimizer`, the model, the epoch and evaluation functions mapped
over the group's leading member axis by :func:`over_members`; the epoch packed or per leaf as
:func:`resolve_execution` decides); :func:`init_group` makes the stacked initial state;
:func:`place_group` puts state and data on the mesh of a distributed run; :func:`compile_group`
compiles the epoch (state donated) and one evaluation program for every split.
``GroupTrainer`` (``_trainer.py``) calls them in that order.

Every group, a single run included, holds its state stacked on a leading axis of K members;
:func:`member_slice` takes one member out (checkpoints, logs and summaries are per member).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.data import ShardedData
from jopt.experiment._build import (
    Setup,
    build_optimizer,
    schedule_multiplier,
    vmappable_values,
)
from jopt.experiment._policy import EVAL_PARAMS_OPTIMIZERS, config_precision
from jopt.experiment._schema import Config


def over_members(fn: Any, K: int, in_axes: tuple) -> Any:
    """``fn`` mapped over the group's leading member axis (``in_axes``: 0 or None per argument;
    every output gets the axis).

    K > 1 is ``jax.vmap``. For K = 1 the one member is taken out of the axis, ``fn`` runs on
    it and the axis is put back: the same arithmetic as an unmapped run, bit for bit. A
    ``vmap`` of size one batches the dots and convolutions and so changes the rounding (the
    CNN config's parameters differ by up to 0.14 after 2 epochs on CPU); docs/decisions.md,
    "A group of one".
    """
    if K > 1:
        return jax.vmap(fn, in_axes=in_axes)

    def one(*args):
        args = [member_slice(a, 0) if ax == 0 else a for a, ax in zip(args, in_axes, strict=True)]
        return jax.tree.map(lambda a: a[None], fn(*args))

    return one


def member_slice(tree: Any, k: int) -> Any:
    """Member ``k`` of a group tree (its leading axis indexed)."""
    return jax.tree.map(lambda a: a[k], tree)


def start_distributed(config: Config) -> Any:
    """``jopt.distributed.setup`` for the config's ``distributed`` section, or None when it is
    off. Call it before any other JAX work (it may start the multi-process runtime and ask for
    host devices)."""
    dist = config.distributed
    if dist.data == 1 and not dist.coordinator_address:
        return None
    from jopt import distributed

    return distributed.setup(dataclasses.asdict(dist))


@dataclasses.dataclass
class Program:
    """What :func:`build_program` gives: the (possibly wrapped) model, the optimizer, its
    learning-rate multiplier and the pure epoch and evaluation functions of a group of ``K``
    (each taking and giving state stacked on a leading axis of K). Nothing is placed,
    initialised or compiled."""

    model: Any
    tx: Any
    mult: Any
    epoch_fn: Any
    eval_fn: Any
    K: int
    execution: str = "per_leaf"
    execution_note: str | None = None
    layout: Any = None
    precision: Any = None  # jopt.models.Precision (train.precision resolved)
    eval_params: Any = None  # (params, opt_state) -> the parameters evaluated (see eval_params_fn)
    # packed (one device, or data parallel without ZeRO): the epoch taking the leaf offsets
    # as arguments (see compile_group)
    epoch_offsets_fn: Any = None


def resolve_execution(
    config: Config, tx: Any, params: Any, multiple_of: int = 1
) -> tuple[str, Any, str | None]:
    """``(execution, layout, note)``: how the run applies ``tx`` to ``params``.

    ``per_leaf`` and ``fused`` are taken as written (``layout`` None). ``packed`` and ``auto``
    ask ``jopt.fused.packed_layout(tx, params, multiple_of=...)`` for the buffers (one per dtype
    and leaf class); where packed execution cannot be exact it raises one line, which
    ``packed`` re-raises and ``auto`` turns into ``per_leaf`` plus the ``note`` saying why.
    """
    from jopt.fused import packed_layout

    execution = config.optimizer.execution
    if execution in ("per_leaf", "fused"):
        return execution, None, None
    try:
        return "packed", packed_layout(tx, params, multiple_of=multiple_of), None
    except JoptError as e:
        why = str(e).splitlines()[0]
        if execution == "packed":
            raise JoptError(
                f"optimizer.execution: packed is not exact here: {why}; "
                "use optimizer.execution: per_leaf (or auto)"
            ) from None
        return "per_leaf", None, f"training per leaf: {why}"


def build_program(config: Config, setup: Setup, K: int = 1, parallel: Any = None) -> Program:
    """Build the group's pure functions: the optimizer (:func:`build_optimizer`, wrapped for
    ``parallel``), the model and the epoch/eval functions over the group (:func:`over_members`).

    The epoch is packed when :func:`resolve_execution` says so: it takes and returns the
    per-leaf train state (checkpoints, evaluation, logs and hyperparameters read it per
    parameter path) and runs every step of the epoch on packed buffers in between."""
    from jopt.train import init_train_state, make_eval_fn, make_train_epoch, under_matmul_precision

    total_steps = setup.epochs * setup.steps_per_epoch
    spe = setup.steps_per_epoch
    tx = build_optimizer(config, steps_per_epoch=spe, total_steps=total_steps)
    mult = schedule_multiplier(config, total_steps, spe)
    model = setup.model
    sharded = isinstance(setup.data, ShardedData)  # streamed: no arrays (_stream)
    if parallel is not None:
        if K > 1:
            raise JoptError("distributed runs cannot be vmapped in a sweep; run them one by one")
        if not sharded:  # a sharded run checks its global batch itself
            parallel.check_batching(setup.batching, len(setup.data.y_train))
    sample = jnp.asarray(setup.data.sample if sharded else setup.data.x_train[:1])
    shapes = jax.eval_shape(lambda: init_train_state(model, tx, sample, jax.random.key(0)).params)
    # ZeRO-1 splits each packed buffer evenly over the data axis: pad to a multiple of it.
    multiple = parallel.size if parallel is not None and parallel.zero else 1
    execution, layout, note = resolve_execution(config, tx, shapes, multiple)
    if note is not None:
        print(f"{config.name}: {note}", file=sys.stderr)
    if parallel is not None:
        model, tx = parallel.model(model), parallel.optimizer(tx)
    epoch_fn = make_train_epoch(
        model,
        tx,
        setup.spec,
        setup.batching,
        augment=setup.augment,
        kind=setup.data.kind,
        layout=layout,
    )
    eval_fn = make_eval_fn(model, setup.spec, chunk_size=config.batching.eval_batch_size)
    # train.matmul_precision: fixed when traced (recorded on every dot_general)
    policy = config_precision(config)
    epoch_fn = under_matmul_precision(epoch_fn, policy)
    eval_fn = under_matmul_precision(eval_fn, policy)
    eval_params = eval_params_fn(config)
    epoch_offsets_fn = None
    # ZeRO-1 keeps static splits: its optimizer state is sharded, and a dynamic slice of a
    # sharded buffer would gather the whole buffer at the epoch's exit.
    if layout is not None and (parallel is None or not parallel.zero):
        epoch_offsets_fn = over_members(epoch_fn, K, (0, None, None, None))
    epoch_fn = over_members(epoch_fn, K, (0, None, None))
    eval_fn = over_members(eval_fn, K, (0, 0, None, None))
    eval_params = over_members(eval_params, K, (0, 0))
    program = Program(
        model, tx, mult, epoch_fn, eval_fn, K, execution, note, layout, policy, eval_params
    )
    program.epoch_offsets_fn = epoch_offsets_fn
    return program


def eval_params_fn(config: Config) -> Any:
    """``(params, opt_state) -> params`` to evaluate with: the schedule-free evaluation point
    ``x = (y - (1 - b1) z) / b1`` (``jopt.schedule_free_eval_params``) for ``schedule_free*``,
    ASGD's average (``jopt.asgd_averaged_params``) for ``asgd``, else the trained ``params``."""
    name = config.optimizer.name
    if name not in EVAL_PARAMS_OPTIMIZERS:
        return lambda params, opt_state: params
    from jopt.optimizers import asgd_averaged_params, schedule_free_eval_params

    if name == "asgd":
        return lambda params, opt_state: asgd_averaged_params(opt_state)
    return lambda params, opt_state: schedule_free_eval_params(opt_state, params)


def init_group(
    program: Program, configs: list[Config], sample: Any, parallel: Any = None
) -> tuple[Any, bool]:
    """The group's initial train state (stacked over its K members) and whether it is already
    placed. Each member's state starts from its seed, with its hyperparameters
    (:func:`vmappable_values`) written into the optimizer state (``jopt.set_hparams``).

    In a multi-process job the state is built straight into its global shardings: a ZeRO-1
    optimizer's init already yields arrays spread over other processes' devices, which no
    process can copy whole to place them afterwards."""
    from jopt.combinators import set_hparams
    from jopt.train import init_train_state

    def init_one(seed, hparams):
        st = init_train_state(program.model, program.tx, sample, jax.random.key(seed))
        return st._replace(opt_state=set_hparams(st.opt_state, **hparams))

    values = [vmappable_values(c) for c in configs]
    seeds = np.asarray([c.seed for c in configs], np.uint32)
    hps = {k: np.asarray([v[k] for v in values], np.float32) for k in values[0]}
    init = over_members(init_one, program.K, (0, 0))
    if parallel is not None and jax.process_count() > 1:
        return parallel.init_state(init, seeds, hps), True
    # one jitted init (for the whole group) instead of many small eager dispatches
    return jax.jit(init)(jnp.asarray(seeds), jax.tree.map(jnp.asarray, hps)), False


def place_group(
    state: Any, x: Any, y: Any, splits: dict, parallel: Any = None, placed: bool = False
) -> tuple[Any, Any, Any, dict]:
    """Put the state and the data where the program runs: as they are on one device; with
    ``parallel``, the state sharded (unless ``placed``) and the data replicated on the mesh."""
    if parallel is None:
        return state, x, y, splits
    if not placed:
        state = parallel.shard_state(state)
    x, y = parallel.replicate(x, y)
    splits = {s: tuple(parallel.replicate(*xy)) for s, xy in splits.items()}
    return state, x, y, splits


@dataclasses.dataclass(frozen=True)
class _WithArgs:
    """A jitted or compiled ``fn(state, x, y, extra)`` called as ``fn(state, x, y)``: ``extra``
    (the leaf offsets) is passed on every call."""

    fn: Any
    extra: tuple

    def __call__(self, state: Any, x: Any, y: Any) -> Any:
        return self.fn(state, x, y, self.extra)


def compile_group(
    program: Program, state: Any, x: Any, y: Any, splits: dict, parallel: Any = None
) -> tuple[Any, Any]:
    """``(epoch, evaluate)``: the epoch function jitted with the state donated (through
    ``parallel.jit_epoch`` when distributed: traced now, compiled on first call) and every
    evaluation split in one compiled program (one compile instead of one per split size)."""
    if parallel is not None and program.epoch_offsets_fn is not None:
        # Data-parallel, packed: the offsets are replicated arguments, as on one device.
        offsets = tuple(parallel.replicate(o) for o in program.layout.offsets())
        run = parallel.jit(program.epoch_offsets_fn, state, num_data_args=0, num_other_args=3)
        run.lower(state, x, y, offsets)
        epoch = _WithArgs(run, offsets)
    elif parallel is not None:
        epoch = parallel.jit_epoch(program.epoch_fn, state)
        epoch.lower(state, x, y)
    elif program.epoch_offsets_fn is not None:
        # Packed: the leaf offsets are arguments of the compiled epoch, so XLA cuts the leaves
        # with one kernel per leaf size; as constants it compiles a kernel per leaf.
        offsets = program.layout.offsets()
        fn = jax.jit(program.epoch_offsets_fn, donate_argnums=0)
        epoch = _WithArgs(fn.lower(state, x, y, offsets).compile(), offsets)
    else:
        epoch = jax.jit(program.epoch_fn, donate_argnums=0).lower(state, x, y).compile()
    eval_fn, eval_params = program.eval_fn, program.eval_params

    def eval_all(params, model_state, opt_state, splits):
        params = eval_params(params, opt_state)
        return {s: eval_fn(params, model_state, *xy) for s, xy in splits.items()}

    evaluate = (
        jax.jit(eval_all).lower(state.params, state.model_state, state.opt_state, splits).compile()
    )
    return epoch, evaluate
