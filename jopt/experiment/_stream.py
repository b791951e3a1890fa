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
    "steps_into_epoch",
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


def steps_into_epoch(book: dict) -> int:
    """Optimizer steps a checkpoint's bookkeeping records past its completed epochs (a
    mid-epoch checkpoint of a streamed run; 0 otherwise)."""
    data = (book.get("stream") or {}).get("data") or {}
    return int(data.get("next_index", 0))


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

    Made in two stages, as the runner builds: ``ShardedRun(program, setup, config, parallel)``
    knows the batches and the evaluation splits (:attr:`splits`, before any state exists);
    :meth:`compile` takes the initial (placed) group state and gives ``(epoch, evaluate)`` in
    the runner's signatures: ``epoch(state, *unused) -> (state, metrics)`` (a
    ``jopt.train.StreamEpoch`` on the group's one member) and ``evaluate(params, model_state,
    opt_state, splits)``.

    Mid-epoch checkpoints: with ``train.checkpoint_every_steps`` = n, :meth:`compile`'s
    ``save_step(state, epochs_done, step)`` runs after every n-th optimizer step that does not
    end an epoch; the runner writes :func:`jopt.distributed.step_checkpoint_path` with
    :meth:`position` in its bookkeeping, and :meth:`resume` reads that back.
    """

    def __init__(self, program: Any, setup: Any, config: Config, parallel: Any = None) -> None:
        if program.K != 1:
            raise JoptError(
                "sharded data trains one run at a time: a sweep cannot vmap runs over it "
                "(give each grid point its own jopt run)"
            )
        data, b = setup.data, setup.batching
        self.program, self.setup, self.config = program, setup, config
        self.data, self.parallel = data, parallel
        pc, pi = jax.process_count(), jax.process_index()
        steps, self.local_rows = stream_steps(b, data.num_train, pc)
        if steps != setup.steps_per_epoch:  # the set-up counted them the same way
            raise JoptError(f"steps per epoch {steps} != {setup.steps_per_epoch}")
        if parallel is not None:
            parallel.check_batch(self.local_rows * pc)
        self.shards = data.train_shards(
            self.local_rows, seed=config.seed, shuffle=b.shuffle, process_index=pi,
            process_count=pc,
        )  # fmt: skip
        chunk = int(config.batching.eval_batch_size)
        if parallel is not None:  # every process's chunk splits over its own devices
            per = max(parallel.size // pc, 1)
            chunk = -(-chunk // per) * per
        dirs = dict(data.splits())
        if config.train.eval_train:
            dirs = {"train_eval": data.train, **dirs}
        self.splits = {
            name: (self._chunks(d, chunk, pi, pc), _count(d)) for name, d in dirs.items()
        }
        self.every = int(config.train.checkpoint_every_steps)
        self.epoch: Any = None
        self.save_step: Any = None

    def compile(self, state: Any, save_step: Any = None) -> tuple[Any, Any]:
        """``(epoch, evaluate)`` for the group's ``state`` (stacked on a leading member axis
        of one, as the runner holds it; both take and give that axis). The step is compiled
        now (the evaluation on its first call); it and ``save_step`` see the one member."""
        from jopt.train import StreamEpoch, make_eval_sums, make_stream_step, under_matmul_precision

        program, setup, parallel = self.program, self.setup, self.parallel
        b = setup.batching
        step = make_stream_step(
            program.model,
            program.tx,
            setup.spec,
            accumulate_steps=b.accumulate_steps if b.strategy == "accumulate" else 1,
            augment=setup.augment,
            kind=self.data.kind,
            layout=program.layout,
        )
        step = under_matmul_precision(step, program.precision)
        sums = under_matmul_precision(make_eval_sums(program.model, setup.spec), program.precision)

        one = jax.eval_shape(_first, state)
        rows = self.local_rows * jax.process_count()
        x_like = jax.ShapeDtypeStruct((rows, *self.data.input_shape), jnp.float32)
        y_dtype = jnp.int32 if self.data.task == "classification" else jnp.float32
        y_like = jax.ShapeDtypeStruct((rows, *self._y_shape()), y_dtype)
        if parallel is None:
            self.step = jax.jit(step, donate_argnums=0).lower(one, x_like, y_like).compile()
            self._sums = jax.jit(sums)
            unstack, restack = jax.jit(_first), jax.jit(_stack)
        else:
            self.step = parallel.jit(step, one, num_data_args=2)
            self.step.lower(one, x_like, y_like)
            sh = parallel.state_shardings(one)
            unstack = jax.jit(_first, out_shardings=sh)
            restack = jax.jit(_stack, out_shardings=jax.tree.map(lambda a: a.sharding, state))
            self._sums = jax.jit(
                sums,
                in_shardings=(sh.params, sh.model_state, *[parallel.batch] * 3),
                out_shardings=parallel.replicated,
            )
        self.save_step = save_step
        self.epoch = StreamEpoch(
            self.step,
            self.shards,
            self._put,
            classification=self.data.task == "classification",
            on_step=self._on_step,
        )

        def epoch(group_state: Any, *unused: Any) -> tuple[Any, dict]:
            st, metrics = self.epoch(unstack(group_state))
            return restack(st), _stack(metrics)

        eval_params = jax.jit(program.eval_params)  # schedule-free / ASGD: the evaluated point
        first = jax.jit(_first)

        def evaluate(params: Any, model_state: Any, opt_state: Any, splits: Any = None) -> dict:
            params = eval_params(params, opt_state)
            return _stack(self.evaluate(*first((params, model_state))))

        return epoch, evaluate

    def _y_shape(self) -> tuple[int, ...]:
        if self.data.task == "classification" or self.data.num_classes == 1:
            return ()
        return (self.data.num_classes,)

    def _on_step(self, state: Any, epoch: int, position: int) -> None:
        step = (epoch - 1) * self.shards.steps_per_epoch + position
        if self.every and self.save_step is not None and step % self.every == 0:
            self.save_step(state, epoch - 1, step)

    def _chunks(self, directory: str, chunk: int, pi: int, pc: int) -> Any:
        from jopt.data import eval_batches

        return lambda: eval_batches(directory, chunk, process_index=pi, process_count=pc)

    def _put(self, batch: dict) -> tuple:
        x, y = self.data.cast(batch)
        arrays = (x, y, batch["w"]) if "w" in batch else (x, y)
        if self.parallel is None:
            return tuple(jnp.asarray(a) for a in arrays)
        return tuple(self.parallel.shard_batch(*arrays))

    def evaluate(self, params: Any, model_state: Any) -> dict:
        """``{split: {metric: value}}`` of one member over every record of each split."""
        from jopt.train import evaluate_stream

        return evaluate_stream(self._sums, params, model_state, self.splits, self._put)

    def position(self) -> dict:
        """What a checkpoint stores of the data position (JSON)."""
        return self.epoch.position_state()

    def resume(self, epochs_done: int, book: dict) -> None:
        """Continue from a checkpoint's bookkeeping (its ``stream`` position, if any)."""
        self.epoch.resume(epochs_done, book.get("stream"))


def _first(tree: Any) -> Any:
    """The one member of a group tree (its leading axis taken out)."""
    return jax.tree.map(lambda a: a[0], tree)


def _stack(tree: Any) -> Any:
    """A member's tree with the group's leading axis of one."""
    return jax.tree.map(lambda a: jnp.asarray(a)[None], tree)


def _count(directory: str) -> int:
    from jopt.data import ArrayShards

    return len(ArrayShards(directory))
