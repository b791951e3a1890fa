"""Data-parallel training: shard a pure train step or epoch with ``jit`` in/out shardings.

A :class:`DataParallel` holds a mesh and says where every array lives:

- batches are split along the data axis (given to a step function, or, inside an epoch
  function, split by the model wrapper :meth:`DataParallel.model`); the training set an epoch
  function shuffles and gathers from is replicated;
- the train state (parameters, model state, step, key) is replicated;
- the optimizer state is replicated, or split over the data axis with ``zero=1`` (ZeRO-1, see
  :mod:`jopt.distributed._zero`).

:meth:`DataParallel.jit` / :meth:`DataParallel.jit_epoch` then compile a *pure, un-jitted*
function from the training engine, ``fn(state, x, y, ...) -> (state, metrics)``, with those
shardings. The gradient of a mean loss
over a split batch is averaged by the partitioner (an all-reduce it inserts), so the step's code
is the single-device code, and its result matches single-device training up to float
summation order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from jopt.core.errors import JoptError
from jopt.distributed._config import DATA_AXIS, DistributedSpec, parse_distributed
from jopt.distributed._engine import ShardedModel, check_batching, place_dataset
from jopt.distributed._mesh import (
    batch_sharding,
    make_data_mesh,
    replicated_sharding,
    request_cpu_devices,
)
from jopt.distributed._multihost import (
    check_divisible,
    global_array,
    initialize,
    is_main_process,
    process_rows,
)
from jopt.distributed._zero import zero1, zero1_shardings

OPT_STATE_FIELD = "opt_state"
"""The field of a train state that holds the optimizer state (what ZeRO-1 shards)."""


def _get_field(state: Any, name: str) -> Any:
    if isinstance(state, dict):
        return state[name]
    return getattr(state, name)


def _replace_field(state: Any, name: str, value: Any) -> Any:
    if isinstance(state, dict):
        return {**state, name: value}
    if hasattr(state, "_replace"):  # NamedTuple
        return state._replace(**{name: value})
    if hasattr(state, "replace"):  # flax.struct dataclass
        return state.replace(**{name: value})
    if dataclasses.is_dataclass(state):
        return dataclasses.replace(state, **{name: value})
    raise JoptError(f"cannot set field {name!r} of a {type(state).__name__} train state")


def _has_field(state: Any, name: str) -> bool:
    return name in state if isinstance(state, dict) else hasattr(state, name)


def _global_from_full(x: Any, sharding: NamedSharding) -> jax.Array:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _global_from_full(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """The mesh and shardings of one data-parallel run.

    Attributes:
      mesh: a one-axis mesh named ``"data"``.
      zero: ``0`` replicated optimizer state, ``1`` ZeRO-1 sharded optimizer state.
    """

    mesh: Mesh
    zero: int = 0

    @property
    def size(self) -> int:
        """Devices on the data axis."""
        return int(self.mesh.shape[DATA_AXIS])

    @property
    def is_main(self) -> bool:
        """True in the process that writes logs and checkpoints metadata (process 0)."""
        return is_main_process()

    @property
    def batch(self) -> NamedSharding:
        """The sharding of a batch (leading axis over the data axis)."""
        return batch_sharding(self.mesh)

    @property
    def replicated(self) -> NamedSharding:
        """A full copy on every device."""
        return replicated_sharding(self.mesh)

    # -- state ---------------------------------------------------------------------------------
    def state_shardings(self, state: Any) -> Any:
        """A tree of shardings matching ``state`` (arrays or ``ShapeDtypeStruct`` leaves).

        Everything is replicated, except the ``opt_state`` field under ``zero=1``.
        """
        shardings = jax.tree.map(lambda _: self.replicated, state)
        if self.zero and _has_field(state, OPT_STATE_FIELD):
            opt = zero1_shardings(_get_field(state, OPT_STATE_FIELD), self.mesh)
            shardings = _replace_field(shardings, OPT_STATE_FIELD, opt)
        elif self.zero:
            # A bare optimizer state (no train-state wrapper) is sharded as a whole.
            shardings = zero1_shardings(state, self.mesh)
        return shardings

    def shard_state(self, state: Any) -> Any:
        """Place ``state`` on the mesh (replicated; optimizer state split under ZeRO-1).

        Every process passes the same full state (same seed). The result may share buffers with
        ``state``; since jitted steps donate their input state, do not reuse ``state`` after.
        """
        shardings = self.state_shardings(state)
        if jax.process_count() == 1:
            return jax.device_put(state, shardings)
        # Across processes device_put cannot target other hosts' devices: each process builds
        # the shards its own devices hold from its (identical) copy.
        return jax.tree.map(_global_from_full, state, shardings)

    def init_state(self, init_fn: Callable[..., Any], *args: Any) -> Any:
        """``init_fn(*args)`` computed straight into the state's shardings (jit out_shardings).

        Nothing is materialised unsharded first, and it works unchanged across processes.
        """
        shapes = jax.eval_shape(init_fn, *args)
        return jax.jit(init_fn, out_shardings=self.state_shardings(shapes))(*args)

    # -- data ----------------------------------------------------------------------------------
    def check_batch(self, batch_size: int, what: str = "batch size") -> None:
        """Raise :class:`jopt.JoptError` unless ``batch_size`` splits over the data axis."""
        check_divisible(int(batch_size), self.size, what)

    def local_rows(self, global_rows: int) -> np.ndarray:
        """Rows of a ``global_rows``-row dataset that this process loads (all of them if alone)."""
        return process_rows(self.batch, global_rows)

    def shard_batch(self, *arrays: Any, global_rows: int | None = None) -> Any:
        """Split arrays along their leading axis over the data axis.

        In one process, pass whole arrays. In a multi-process job, pass this process's rows
        (:meth:`local_rows`); they become one global array without host-to-host copies.
        Returns one array for one argument, else a tuple.
        """
        out = tuple(
            jax.tree.map(lambda a: global_array(self.batch, a, global_rows), a) for a in arrays
        )
        return out[0] if len(out) == 1 else out

    def replicate(self, *arrays: Any) -> Any:
        """Full copies of ``arrays`` on every device (for data an epoch function gathers from)."""
        out = tuple(jax.device_put(a, self.replicated) for a in arrays)
        return out[0] if len(out) == 1 else out

    def model(self, model: Any) -> ShardedModel:
        """``model`` wrapped so that the batches it sees are split over the data axis."""
        return model if isinstance(model, ShardedModel) else ShardedModel(model, self.batch)

    def check_batching(self, batching: Any, num_train: int) -> None:
        """Raise :class:`jopt.JoptError` unless ``batching``'s batches split over the data axis."""
        check_batching(batching, num_train, self.size)

    # -- the training engine's fit -------------------------------------------------------------
    def prepare_fit(
        self,
        model: Any,
        tx: Any,
        data: Any,
        *,
        key: Any = 0,
        batching: Any = None,
        state: Any = None,
    ) -> tuple[ShardedModel, Any, Any, Any]:
        """``(model, tx, data, state)`` to hand to ``jopt.train.fit`` for data-parallel training.

        Checks that the batch splits over the data axis, wraps ``model`` so its batches are
        split (:class:`ShardedModel`), wraps ``tx`` for ZeRO-1 when ``zero=1``
        (:meth:`optimizer`), replicates the data splits on the mesh and builds (or places) the
        train state with :meth:`state_shardings`. Pass the four on:
        ``fit(model, tx, data, state=state, batching=batching, ...)``.
        """
        from jopt.data import Batching
        from jopt.train import init_train_state

        batching = batching or Batching()
        self.check_batching(batching, len(data.y_train))
        wrapped = self.model(model)
        tx = self.optimizer(tx)
        data = place_dataset(data, self.replicated)
        if state is None:
            if isinstance(key, int):
                key = jax.random.key(key)
            sample = data.x_train[:1]
            state = self.init_state(lambda k: init_train_state(wrapped, tx, sample, k), key)
        else:
            state = self.shard_state(state)
        return wrapped, tx, data, state

    def optimizer(self, tx: Any) -> Any:
        """``tx`` itself, or under ``zero=1`` ``tx`` wrapped by :func:`jopt.distributed.zero1`."""
        return zero1(tx, self.mesh) if self.zero else tx

    # -- compile -------------------------------------------------------------------------------
    def jit(
        self,
        fn: Callable[..., tuple[Any, Any]],
        state: Any,
        *,
        num_data_args: int = 2,
        num_other_args: int = 0,
        donate: bool = True,
    ) -> ShardedStep:
        """``jax.jit(fn)`` with data-parallel in/out shardings.

        ``fn(state, *data, *other) -> (state, metrics)`` is a pure step or epoch function;
        ``state`` is a template of its state (arrays or ``ShapeDtypeStruct``). The
        ``num_data_args`` data arguments are split along their leading axis, the
        ``num_other_args`` after them are replicated. The returned state keeps the state's
        shardings; metrics are replicated. ``donate`` donates the incoming state's buffers.
        """
        state_sh = self.state_shardings(state)
        in_sh = (
            state_sh,
            *([self.batch] * num_data_args),
            *([self.replicated] * num_other_args),
        )
        jitted = jax.jit(
            fn,
            in_shardings=in_sh,
            out_shardings=(state_sh, self.replicated),
            donate_argnums=(0,) if donate else (),
        )
        return ShardedStep(jitted, self, num_data_args)

    def jit_epoch(self, epoch_fn: Callable[..., tuple[Any, Any]], state: Any) -> ShardedStep:
        """:meth:`jit` for ``jopt.train.make_train_epoch``'s ``epoch_fn(state, x, y)``.

        The whole training set ``x, y`` is replicated (pass :meth:`replicate` d arrays): the
        epoch shuffles and gathers each minibatch itself, and the minibatch is split over the
        data axis by the model wrapper (:meth:`model`), so build ``epoch_fn`` with
        ``dp.model(model)`` and ``dp.optimizer(tx)``.
        """
        return self.jit(epoch_fn, state, num_data_args=0, num_other_args=2)


@dataclasses.dataclass(frozen=True)
class ShardedStep:
    """A jitted step or epoch function that checks its batch sizes before it runs."""

    jitted: Any
    parallel: DataParallel
    num_data_args: int

    def _check(self, args: tuple[Any, ...]) -> None:
        for a in args[: self.num_data_args]:
            for leaf in jax.tree.leaves(a):
                self.parallel.check_batch(np.shape(leaf)[0])

    def __call__(self, state: Any, *args: Any) -> tuple[Any, Any]:
        self._check(args)
        return self.jitted(state, *args)

    def lower(self, state: Any, *args: Any) -> Any:
        """``jax.jit(...).lower``: for inspecting the compiled program (collectives, memory)."""
        self._check(args)
        return self.jitted.lower(state, *args)


def setup(section: Any = None) -> DataParallel:
    """The experiment runner's entry point: read the ``distributed`` section and get ready.

    Connects to the coordinator for a multi-process run (``jax.distributed.initialize``), asks
    for host devices on CPU when one process must supply ``data`` of them, and builds the mesh.
    Call it before any other JAX work. Calling it again later is harmless (the job is already
    started, the devices exist). Bad values raise :class:`jopt.JoptError`.
    """
    spec = parse_distributed(section)
    initialize(spec)
    want = spec.local_devices or (spec.data if not spec.multi_process and spec.data > 1 else 0)
    if want:
        request_cpu_devices(want)
    return DataParallel(make_data_mesh(spec.data), zero=spec.zero)


def from_spec(spec: DistributedSpec, devices: Any = None) -> DataParallel:
    """A :class:`DataParallel` for ``spec`` on ``devices`` (no process start-up)."""
    return DataParallel(make_data_mesh(spec.data, devices), zero=spec.zero)
