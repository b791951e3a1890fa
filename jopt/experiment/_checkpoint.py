"""Checkpoints of the whole training state with orbax-checkpoint.

``checkpoints/epoch_000012/`` holds the pytree (params, optimizer state, step, PRNG key, model
state) after epoch 12. Typed PRNG keys are stored as their raw ``uint32`` data and re-wrapped on
restore, so a resumed run draws exactly the same random numbers as an uninterrupted one.
orbax writes into a temporary directory and renames it when complete, so a crash never leaves a
checkpoint that looks finished.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import jax
import numpy as np

from jopt.core.errors import JoptError

_PATTERN = re.compile(r"^epoch_(\d+)$")


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_storable(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _checkpointer():
    import orbax.checkpoint as ocp

    # orbax logs every save at INFO through absl; keep a user's terminal quiet.
    for name in ("absl", "orbax", "orbax.checkpoint"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return ocp.StandardCheckpointer()


def save_checkpoint(run_dir: str, epoch: int, tree: Any) -> str:
    """Save ``tree`` as ``run_dir/checkpoints/epoch_<epoch>`` and return its path."""
    parent = os.path.join(os.path.abspath(run_dir), "checkpoints")
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, f"epoch_{epoch:06d}")
    ckpt = _checkpointer()
    try:
        ckpt.save(path, _to_storable(tree), force=True)
        ckpt.wait_until_finished()
    finally:
        ckpt.close()
    return path


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """``(epoch, path)`` of every finished checkpoint, oldest first."""
    parent = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(parent):
        return []
    found = []
    for name in os.listdir(parent):
        m = _PATTERN.match(name)
        if m and os.path.isdir(os.path.join(parent, name)):
            found.append((int(m.group(1)), os.path.join(parent, name)))
    return sorted(found)


def restore_checkpoint(path: str, like: Any) -> Any:
    """Restore the pytree at ``path`` into the structure, shapes and dtypes of ``like``."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(path):
        raise JoptError(f"checkpoint not found: {path}")
    storable = _to_storable(like)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, storable)
    ckpt = _checkpointer()
    try:
        restored = ckpt.restore(os.path.abspath(path), abstract)
    finally:
        ckpt.close()

    def rewrap(ref, value):
        if _is_key(ref):
            return jax.random.wrap_key_data(value, impl=jax.random.key_impl(ref))
        return value

    restored = jax.tree.map(rewrap, like, restored)
    # restored leaves may be numpy; put them on the default device like the originals
    return jax.tree.map(
        lambda x: jax.numpy.asarray(x) if isinstance(x, np.ndarray) else x, restored
    )
