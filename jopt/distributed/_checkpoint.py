"""Checkpoints of train states with orbax: the one checkpoint module of jopt.

``save_checkpoint`` writes every array of a tree, whatever its sharding (one device, replicas
or ZeRO-1 shards), with orbax's ``StandardCheckpointer`` (tensorstore/OCDBT). Each shard is
written once, by the process that holds it (replicated arrays: by replica 0, which lives on
process 0); process 0 alone writes the metadata and commits the directory. orbax writes into a
temporary directory and renames it when complete, so a crash never leaves a checkpoint that
looks finished. In a multi-process job every process must call it (it is a collective), and the
directory must be on a filesystem all processes see.

``restore_checkpoint`` reads straight into the shardings you ask for, so a state saved on 8
devices (ZeRO-1 shards or replicas) restores on a 4-device mesh or on one device: orbax reads
the slices each target device needs.

Typed PRNG keys (``jax.random.key``) are stored as their raw ``uint32`` key data and wrapped
again on restore, so a resumed run draws exactly the same random numbers as an uninterrupted
one.

A restore that fails (a truncated or corrupt array file) first lets orbax's other reads of it
finish, so nothing of it is left running: orbax runs each restore in a fresh asyncio event loop
and closes that loop when the first read fails, and the reads still pending would otherwise be
torn down whenever they are collected ("Exception ignored in" tracebacks: ``GeneratorExit`` in
orbax's read coroutines, "Event loop is closed" in tensorstore's callbacks).

A run directory keeps one checkpoint per saved epoch, ``checkpoints/epoch_000012/``
(:func:`epoch_checkpoint_path`, :func:`list_checkpoints`); single-device and distributed runs of
``jopt run`` both use this layout and these functions. A run on streamed (sharded) data may also
keep mid-epoch ones, ``epoch_000012_step_000000400/`` (:func:`step_checkpoint_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import jax
from jax.sharding import Sharding, SingleDeviceSharding

from jopt.core.errors import JoptError

_EPOCH = re.compile(r"^epoch_(\d+)(?:_step_(\d+))?$")


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _checkpointer():
    import orbax.checkpoint as ocp

    # orbax logs every save at INFO through absl; keep a user's terminal quiet.
    for name in ("absl", "orbax", "orbax.checkpoint"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return ocp.StandardCheckpointer()


class _JoiningLoop(asyncio.SelectorEventLoop):
    """An event loop that, when closed, first runs the tasks still pending on it to their end."""

    def close(self) -> None:
        if not self.is_closed() and not self.is_running():
            pending = asyncio.all_tasks(self)
            if pending:  # their exceptions are the failed restore's: gathered, not reported
                self.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        super().close()


@contextlib.contextmanager
def _reads_joined():
    """New asyncio event loops are :class:`_JoiningLoop` s while inside (orbax's restore runs
    in a new loop it closes on the first failed read, other reads still pending)."""
    with warnings.catch_warnings():  # event loop policies are deprecated from Python 3.14
        warnings.simplefilter("ignore", DeprecationWarning)

        class Policy(asyncio.DefaultEventLoopPolicy):
            def new_event_loop(self):
                return _JoiningLoop()

        old = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(Policy())
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(old)


def save_checkpoint(path: str | Path, tree: Any) -> Path:
    """Write ``tree`` (a pytree of, possibly sharded, arrays) to the directory ``path``.

    An existing checkpoint at ``path`` is replaced. Returns the absolute path.
    """
    path = Path(path).absolute()
    ckptr = _checkpointer()
    try:
        ckptr.save(path, _keys_to_data(tree), force=True)
        ckptr.wait_until_finished()
    finally:
        ckptr.close()
    return path


def _sharding_of(x: Any) -> Sharding:
    s = getattr(x, "sharding", None)
    return s if isinstance(s, Sharding) else SingleDeviceSharding(jax.devices()[0])


def restore_checkpoint(path: str | Path, like: Any, shardings: Any = None) -> Any:
    """Read the checkpoint at ``path`` into the structure of ``like``, placed by ``shardings``.

    Args:
      path: a directory written by :func:`save_checkpoint`.
      like: a tree of arrays (jax or numpy) or ``jax.ShapeDtypeStruct`` with the saved
        structure, shapes and dtypes (``jax.eval_shape`` of the state's init gives one without
        allocating).
      shardings: a tree of ``jax.sharding.Sharding`` matching ``like`` (for instance
        ``DataParallel.state_shardings(like)`` for the new mesh), or one sharding for every
        leaf. ``None`` uses each leaf of ``like``'s own sharding (the default device for a
        numpy leaf or one without a sharding).

    ``like=None`` reads the tree as saved, without a target: containers become dicts (by
    field or key name) and lists, typed PRNG keys stay raw ``uint32`` key data, each array
    on the device it was saved from (``jopt.experiment.load_module`` maps it back by path).
    """
    path = Path(path).absolute()
    if not path.is_dir():
        raise JoptError(f"no checkpoint directory at {path}")
    if like is None:
        ckptr = _checkpointer()
        try:
            with _reads_joined():
                return ckptr.restore(path)
        finally:
            ckptr.close()
    if shardings is None:
        shardings = jax.tree.map(_sharding_of, like)
    elif isinstance(shardings, Sharding):
        shardings = jax.tree.map(lambda _: shardings, like)

    def abstract(x, s):
        if _is_key(x):
            data = jax.eval_shape(jax.random.key_data, x)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=s)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

    target = jax.tree.map(abstract, like, shardings)
    ckptr = _checkpointer()
    try:
        with _reads_joined():
            restored = ckptr.restore(path, target)
    finally:
        ckptr.close()

    def rewrap(x, r):
        if not _is_key(x):
            return r
        impl = jax.random.key_impl(x) if isinstance(x, jax.Array) else None
        return jax.random.wrap_key_data(r, impl=impl)

    return jax.tree.map(rewrap, like, restored)


def epoch_checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``run_dir/checkpoints/epoch_<epoch, 6 digits>``: where a run keeps an epoch's state."""
    return Path(run_dir).absolute() / "checkpoints" / f"epoch_{int(epoch):06d}"


def step_checkpoint_path(run_dir: str | Path, epoch: int, step: int) -> Path:
    """``run_dir/checkpoints/epoch_<epoch>_step_<step>``: a mid-epoch state after ``epoch``
    completed epochs and ``step`` optimizer steps in all (streamed data only)."""
    name = f"epoch_{int(epoch):06d}_step_{int(step):09d}"
    return Path(run_dir).absolute() / "checkpoints" / name


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, str]]:
    """``(epoch, path)`` of every finished checkpoint of a run directory, oldest first.

    ``epoch`` counts completed epochs: a mid-epoch checkpoint (:func:`step_checkpoint_path`)
    sorts after its epoch's and before the next one's."""
    parent = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(parent):
        return []
    found = []
    for name in os.listdir(parent):
        m = _EPOCH.match(name)
        if m and os.path.isdir(os.path.join(parent, name)):
            step = -1 if m.group(2) is None else int(m.group(2))
            found.append((int(m.group(1)), step, os.path.join(parent, name)))
    return [(epoch, path) for epoch, _, path in sorted(found)]
