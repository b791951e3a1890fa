"""The runner's set-up, one function per stage: build, initialise, place, compile.

:func:`build_program` turns a config into pure functions (the optimizer from
:func:`jopt.experiment.build_optimizer`, the model, the epoch and evaluation functions,
vmapped over a group of K members when K > 1); :func:`init_group` makes the (stacked) initial
state; :func:`place_group` puts state and data on the mesh of a distributed run;
:func:`compile_group` compiles the epoch (state donated) and one evaluation program for every
split. ``GroupTrainer`` (``_trainer.py``) calls them in that order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.experiment._build import (
    Setup,
    build_optimizer,
    schedule_multiplier,
    vmappable_values,
)
from jopt.experiment._schema import Config


@dataclasses.dataclass
class Program:
    """What :func:`build_program` gives: the (possibly wrapped) model, the optimizer, its
    learning-rate multiplier and the pure epoch and evaluation functions of a group of ``K``.
    Nothing is placed, initialised or compiled."""

    model: Any
    tx: Any
    mult: Any
    epoch_fn: Any
    eval_fn: Any
    K: int


def build_program(config: Config, setup: Setup, K: int = 1, parallel: Any = None) -> Program:
    """Build the group's pure functions: the optimizer (:func:`build_optimizer`, wrapped for
    ``parallel``), the model and the epoch/eval functions (vmapped over the group when K > 1)."""
    from jopt.train import make_eval_fn, make_train_epoch

    total_steps = setup.epochs * setup.steps_per_epoch
    spe = setup.steps_per_epoch
    tx = build_optimizer(config, steps_per_epoch=spe, total_steps=total_steps)
    mult = schedule_multiplier(config, total_steps, spe)
    model = setup.model
    if parallel is not None:
        if K > 1:
            raise JoptError("distributed runs cannot be vmapped in a sweep; run them one by one")
        parallel.check_batching(setup.batching, len(setup.data.y_train))
        model, tx = parallel.model(model), parallel.optimizer(tx)
    epoch_fn = make_train_epoch(
        model, tx, setup.spec, setup.batching, augment=setup.augment, kind=setup.data.kind
    )
    eval_fn = make_eval_fn(model, setup.spec, chunk_size=config.batching.eval_batch_size)
    if K > 1:
        epoch_fn = jax.vmap(epoch_fn, in_axes=(0, None, None))
        eval_fn = jax.vmap(eval_fn, in_axes=(0, 0, None, None))
    return Program(model, tx, mult, epoch_fn, eval_fn, K)


def init_group(
    program: Program, configs: list[Config], sample: Any, parallel: Any = None
) -> tuple[Any, bool]:
    """The group's initial train state (stacked over the K members when K > 1) and whether it
    is already placed. Each member's state starts from its seed, with its hyperparameters
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
    seeds = jnp.asarray([c.seed for c in configs], jnp.uint32)
    hps = {k: jnp.asarray([v[k] for v in values], jnp.float32) for k in values[0]}
    if parallel is not None and jax.process_count() > 1:
        args = (np.uint32(configs[0].seed), {k: np.float32(v[0]) for k, v in hps.items()})
        return parallel.init_state(init_one, *args), True
    # one jitted init (for the whole group) instead of many small eager dispatches
    if program.K == 1:
        return jax.jit(init_one)(seeds[0], {k: v[0] for k, v in hps.items()}), False
    return jax.jit(jax.vmap(init_one))(seeds, hps), False


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


def compile_group(
    program: Program, state: Any, x: Any, y: Any, splits: dict, parallel: Any = None
) -> tuple[Any, Any]:
    """``(epoch, evaluate)``: the epoch function jitted with the state donated (through
    ``parallel.jit_epoch`` when distributed: traced now, compiled on first call) and every
    evaluation split in one compiled program (one compile instead of one per split size)."""
    if parallel is not None:
        epoch = parallel.jit_epoch(program.epoch_fn, state)
        epoch.lower(state, x, y)
    else:
        epoch = jax.jit(program.epoch_fn, donate_argnums=0).lower(state, x, y).compile()
    eval_fn = program.eval_fn

    def eval_all(params, model_state, splits):
        return {s: eval_fn(params, model_state, *xy) for s, xy in splits.items()}

    evaluate = jax.jit(eval_all).lower(state.params, state.model_state, splits).compile()
    return epoch, evaluate
