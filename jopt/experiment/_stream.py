"""``data: {name: shards}``: training on Grain-sharded data through ``jopt run``.

A sharded data set (``jopt.data.load_shards``) is never loaded whole, so the run cannot use the
scan-fused epoch over an on-device array. :class:`ShardedRun` gives the runner what it needs in
its place: the host-fed epoch (``jopt.train.StreamEpoch``: one jitted step per batch, the same
epoch metrics), an evaluation that reads every held-out record once in chunks, and the data
position a checkpoint stores (the Grain iterator's state and the epoch's step metrics so far).

The config::

    data:
      name: shards
      val_fraction: 0        # the held-out directories are the splits
      test_fraction: 0
      preprocess: none       # examples are read as stored
      options: {train: DIR, val: DIR, test: DIR, num_classes: N, kind: tabular}

``batching.batch_size`` is the global batch: each of the P processes reads
``batch_size * accumulate_steps / P`` rows of its own contiguous slice per step, in an order
shuffled per epoch by the run's seed. ``train.checkpoint_every_steps`` adds mid-epoch
checkpoints (``epoch_E_step_S``); a resumed run continues at the same example.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError
from jopt.experiment._schema import Config

__all__ = [
    "SHARDS",
    "ShardedRun",
    "check_checkpoint_steps",
    "check_sharded",
    "has_split",
    "is_sharded",
    "load_sharded",
    "stream_steps",
]

SHARDS = "shards"
OPTIONS = ("train", "val", "test", "num_classes", "kind")


def is_sharded(config: Config) -> bool:
    return config.data.name == SHARDS


def has_split(config: Config, split: str) -> bool:
    """Whether the run has a ``val`` / ``test`` split: a fraction, or a held-out directory."""
    if is_sharded(config):
        return bool(config.data.options.get(split))
    return bool(getattr(config.data, f"{split}_fraction") > 0)


def check_checkpoint_steps(config: Config) -> None:
    if config.train.checkpoint_every_steps and not is_sharded(config):
        raise JoptError(
            "train.checkpoint_every_steps needs sharded data (data.name: shards); an in-memory "
            "epoch runs as one compiled call (use train.checkpoint_every)"
        )


def check_sharded(config: Config, paths: bool = True) -> None:
    """Refuse, one line each, what a sharded run cannot do exactly (run by ``validate``)."""
    d = config.data
    opts = d.options
    extra = sorted(set(opts) - set(OPTIONS))
    if extra:
        allowed = ", ".join(OPTIONS)
        raise JoptError(f"data.options.{extra[0]}: not an option of sharded data ({allowed})")
    for key in ("train", "val", "test"):
        v = opts.get(key)
        if (key == "train" or v is not None) and (not isinstance(v, str) or not v):
            raise JoptError(f"data.options.{key} must be a directory of shards, got {v!r}")
        if paths and v is not None and not os.path.isdir(v):
            raise JoptError(f"data.options.{key}: directory not found: {v}")
    if d.val_fraction or d.test_fraction:
        raise JoptError(
            "data.val_fraction / data.test_fraction: sharded data is not split at random; name "
            "held-out shard directories in data.options.val / .test and set both fractions to 0"
        )
    if d.preprocess != "none":
        raise JoptError(
            f"data.preprocess {d.preprocess!r}: sharded data is read as stored (no statistics "
            "over the whole set); preprocess when writing the shards and set data.preprocess: none"
        )
    b = config.batching
    if b.strategy == "full":
        raise JoptError("batching.strategy full needs the whole set in memory; use minibatch")
    if b.remainder != "drop":
        raise JoptError(
            "batching.remainder pad: sharded epochs drop the last partial batch (every process "
            "takes the same steps); use remainder: drop"
        )
    if config.diagnostics.sharpness_every:
        raise JoptError(
            "diagnostics.sharpness_every needs an in-memory data set (sharded data is streamed)"
        )


def load_sharded(config: Config) -> Any:
    """The config's ``jopt.data.ShardedData``."""
    from jopt.data import load_shards

    o = config.data.options
    return load_shards(
        o["train"],
        val=o.get("val"),
        test=o.get("test"),
        task=config.data.task,
        num_classes=o.get("num_classes"),
        kind=o.get("kind"),
    )


def stream_steps(batching: Any, num_train: int, process_count: int) -> tuple[int, int]:
    """``(steps_per_epoch, rows)``: optimizer steps per epoch and the rows each of
    ``process_count`` processes reads per step (``batch_size * accumulate_steps / P``)."""
    _, k, b = batching.shape(max(num_train, 1))
    rows = k * b
    if rows % process_count:
        raise JoptError(
            f"batch of {rows} rows ({batching.strategy} batching) does not split over "
            f"{process_count} processes; use a multiple of {process_count}"
        )
    local = rows // process_count
    steps = (num_train // process_count) // local
    if steps < 1:
        raise JoptError(
            f"a step takes {rows} rows, more than the {num_train} training records hold "
            f"(over {process_count} processes)"
        )
    return steps, local


class ShardedRun:
    """The streamed epoch and evaluation of one (K = 1) run on sharded data.

    Args:
        program: the runner's ``Program`` (model, tx, layout, precision, eval params).
        setup: the runner's ``Setup`` (``setup.data`` a ``jopt.data.ShardedData``).
        config: the run's config.
        state: the initial (placed) train state: a template for the shardings.
        parallel: a ``jopt.distributed.DataParallel`` or None.
        on_step: ``(state, epoch, position)`` after each step but an epoch's last.
    """

    def __init__(
        self,
        program: Any,
        setup: Any,
        config: Config,
        state: Any,
        parallel: Any = None,
        on_step: Any = None,
    ) -> None:
        from jopt.train import (
            StreamEpoch,
            make_eval_sums,
            make_stream_step,
            under_matmul_precision,
        )

        if program.K != 1:
            raise JoptError(
                "sharded data trains one run at a time: a sweep cannot vmap runs over it "
                "(give each grid point its own jopt run)"
            )
        data, b = setup.data, setup.batching
        self.data, self.parallel = data, parallel
        pc, pi = jax.process_count(), jax.process_index()
        steps, local = stream_steps(b, data.num_train, pc)
        if steps != setup.steps_per_epoch:  # the set-up counted them the same way
            raise JoptError(f"steps per epoch {steps} != {setup.steps_per_epoch}")
        self.shards = data.train_shards(
            local, seed=config.seed, shuffle=b.shuffle, process_index=pi, process_count=pc
        )
        step = make_stream_step(
            program.model,
            program.tx,
            setup.spec,
            accumulate_steps=b.accumulate_steps if b.strategy == "accumulate" else 1,
            augment=setup.augment,
            kind=data.kind,
            layout=program.layout,
        )
        step = under_matmul_precision(step, program.precision)
        sums = under_matmul_precision(make_eval_sums(program.model, setup.spec), program.precision)
        eval_params = program.eval_params

        def eval_chunk(params, model_state, opt_state, x, y, w):
            return sums(eval_params(params, opt_state), model_state, x, y, w)

        if parallel is None:
            self.step = jax.jit(step, donate_argnums=0)
            self._sums = jax.jit(eval_chunk)
        else:
            self.step = parallel.jit(step, state, num_data_args=2)
            sh = parallel.state_shardings(state)
            rep = parallel.replicated
            self._sums = jax.jit(
                eval_chunk,
                in_shardings=(sh.params, sh.model_state, sh.opt_state, *[parallel.batch] * 3),
                out_shardings=rep,
            )
        self.epoch = StreamEpoch(
            self.step,
            self.shards,
            self._put,
            classification=data.task == "classification",
            on_step=on_step,
        )
        chunk = int(config.batching.eval_batch_size)
        if parallel is not None:  # every process's chunk splits over its devices
            per = max(parallel.size // pc, 1)
            chunk = -(-chunk // per) * per
        self.splits = {}
        dirs = dict(data.splits())
        if config.train.eval_train:
            dirs = {"train_eval": data.train, **dirs}
        for name, directory in dirs.items():
            self.splits[name] = (self._chunks(directory, chunk, pi, pc), _count(directory))

    def _chunks(self, directory: str, chunk: int, pi: int, pc: int) -> Any:
        from jopt.data import eval_batches

        return lambda: eval_batches(directory, chunk, process_index=pi, process_count=pc)

    def _put(self, batch: dict) -> tuple:
        x, y = self.data.cast(batch)
        arrays = (x, y, batch["w"]) if "w" in batch else (x, y)
        if self.parallel is None:
            return tuple(jnp.asarray(a) for a in arrays)
        return tuple(self.parallel.shard_batch(*arrays))

    def evaluate(self, params: Any, model_state: Any, opt_state: Any, splits: Any = None) -> dict:
        """``{split: {metric: value}}`` over every record of each held-out split
        (the runner's ``evaluate`` signature; ``splits`` is ignored)."""
        from jopt.train import evaluate_stream

        def sums(p, ms, x, y, w):
            return self._sums(p, ms, opt_state, x, y, w)

        return evaluate_stream(sums, params, model_state, self.splits, self._put)

    def position(self) -> dict:
        """What a checkpoint stores of the data position (JSON)."""
        return self.epoch.position_state()

    def resume(self, epochs_done: int, position: dict | None) -> None:
        self.epoch.resume(epochs_done, position)


def _count(directory: str) -> int:
    from jopt.data import ArrayShards

    return len(ArrayShards(directory))
