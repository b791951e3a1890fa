"""Checkpoints of sharded train states with orbax.

``save_checkpoint`` writes every array of a tree, whatever its sharding, with orbax's
``StandardCheckpointer`` (tensorstore/OCDBT). Each shard is written once, by the process that
holds it (replicated arrays: by replica 0, which lives on process 0); process 0 alone writes the
metadata and commits the directory. In a multi-process job every process must call it (it is a
collective), and the directory must be on a filesystem all processes see.

``restore_checkpoint`` reads straight into the shardings you ask for, so a state saved on 8
devices (ZeRO-1 shards or replicas) restores on a 4-device mesh or on one device: orbax reads
the slices each target device needs.

Typed PRNG keys (``jax.random.key``) are stored as their raw ``uint32`` key data and wrapped
again on restore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.sharding import Sharding

from jopt.core.errors import JoptError


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def save_checkpoint(path: str | Path, tree: Any) -> Path:
    """Write ``tree`` (a pytree of, possibly sharded, arrays) to the directory ``path``.

    An existing checkpoint at ``path`` is replaced. Returns the absolute path.
    """
    path = Path(path).absolute()
    ckptr = ocp.StandardCheckpointer()
    try:
        ckptr.save(path, _keys_to_data(tree), force=True)
        ckptr.wait_until_finished()
    finally:
        ckptr.close()
    return path


def restore_checkpoint(path: str | Path, like: Any, shardings: Any = None) -> Any:
    """Read the checkpoint at ``path`` into the structure of ``like``, placed by ``shardings``.

    Args:
      path: a directory written by :func:`save_checkpoint`.
      like: a tree of arrays or ``jax.ShapeDtypeStruct`` with the saved structure, shapes and
        dtypes (``jax.eval_shape`` of the state's init gives one without allocating).
      shardings: a tree of ``jax.sharding.Sharding`` matching ``like`` (for instance
        ``DataParallel.state_shardings(like)`` for the new mesh), or one sharding for every
        leaf. ``None`` uses each leaf of ``like``'s own sharding.
    """
    path = Path(path).absolute()
    if not path.is_dir():
        raise JoptError(f"no checkpoint directory at {path}")
    if shardings is None:
        shardings = jax.tree.map(lambda x: x.sharding, like)
    elif isinstance(shardings, Sharding):
        shardings = jax.tree.map(lambda _: shardings, like)

    def abstract(x, s):
        if _is_key(x):
            data = jax.eval_shape(jax.random.key_data, x)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=s)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

    target = jax.tree.map(abstract, like, shardings)
    ckptr = ocp.StandardCheckpointer()
    try:
        restored = ckptr.restore(path, target)
    finally:
        ckptr.close()

    def rewrap(x, r):
        if not _is_key(x):
            return r
        impl = jax.random.key_impl(x) if isinstance(x, jax.Array) else None
        return jax.random.wrap_key_data(r, impl=impl)

    return jax.tree.map(rewrap, like, restored)
