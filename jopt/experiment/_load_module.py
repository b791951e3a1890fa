"""``load_module``: a run's checkpoint back as the model library's own module (flax linen
bound module, ``nnx.Module``, equinox module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError

__all__ = ["load_module"]


def _checkpoint_dir(path: Path, epoch: int | None) -> Path:
    from jopt.distributed import list_checkpoints

    if (path / "checkpoints").is_dir() or epoch is not None:
        found = list_checkpoints(path)
        if epoch is not None:
            found = [f for f in found if f[0] == int(epoch)]
        if not found:
            which = f"for epoch {epoch} " if epoch is not None else ""
            raise JoptError(f"{path} has no checkpoint {which}(checkpoints/epoch_NNNNNN)")
        return Path(found[-1][1])
    if not path.is_dir():
        raise JoptError(f"no run directory or checkpoint at {path}")
    return path


def load_module(
    path: str | Path,
    model: Any,
    *,
    epoch: int | None = None,
    best: bool = False,
    sample: Any = None,
) -> Any:
    """The trained module of a ``jopt run`` checkpoint, as its library's own type.

    The checkpoint is read as saved and the parameters and model state are taken from it by
    path, so the optimizer need not be rebuilt.

    Args:
        path: a run directory (its newest checkpoint, or the one of ``epoch``) or one
            checkpoint directory (``<run>/checkpoints/epoch_000012``).
        model: what the run trained: a ``jopt.models.ModelAdapter`` (``setup(config).model``),
            an NNX/equinox class or factory (as given to ``jopt.models.adapt``) or a linen
            module instance.
        epoch: the epoch whose checkpoint to read (default: the newest).
        best: the early-stopping best parameters kept beside the state (the state's own
            when the run kept none) instead of the state's.
        sample: a batch of inputs (shapes only); needed for a linen module only.

    Returns:
        an ``nnx.Module`` (``nnx.merge``, holding its batch statistics; call ``.eval()`` for
        inference), an equinox module (``eqx.combine``; a stateful one comes as ``(module,
        eqx.nn.State)``, what ``eqx.nn.make_with_state`` gives), or a linen module bound to
        its variables.
    """
    from jopt.distributed import restore_checkpoint
    from jopt.models import adapt

    adapter = adapt(model)
    if adapter.framework == "linen" and sample is None:
        raise JoptError("load_module needs sample= (a batch of inputs) for a linen module")
    sample = jax.ShapeDtypeStruct((1, 1), jnp.float32) if sample is None else sample
    like = jax.eval_shape(adapter.init, jax.random.key(0), sample)
    ckpt = _checkpoint_dir(Path(path).absolute(), epoch)
    raw = restore_checkpoint(ckpt, None)  # as saved: dicts by name, lists
    try:
        saved = raw["best"] if best else (raw["state"]["params"], raw["state"]["model_state"])
    except (KeyError, TypeError, IndexError):
        raise JoptError(f"{ckpt} is not a jopt run checkpoint (no state/best)") from None
    params, model_state = _fill(like, list(saved), ckpt)
    module = adapter.module(params, model_state)
    if adapter.framework == "equinox" and jax.tree.leaves(model_state):
        return module, model_state
    return module


def _key_name(k: Any) -> Any:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return str(k)


def _fill(like: Any, saved: Any, ckpt: Path) -> Any:
    """``like``'s structure with each leaf read from ``saved`` at the leaf's path (orbax saves
    custom nodes as dicts of their key names and sequences as lists)."""

    def one(path, x):
        node = saved
        for k in path:
            name = _key_name(k)
            try:
                node = node[name] if isinstance(node, dict) else node[int(name)]
            except (KeyError, IndexError, TypeError, ValueError):
                where = jax.tree_util.keystr(path)
                raise JoptError(f"{ckpt}: the checkpoint has no {where} for this model") from None
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.asarray(node))
        if tuple(node.shape) != tuple(x.shape) or node.dtype != x.dtype:
            where = jax.tree_util.keystr(path)
            raise JoptError(
                f"{ckpt}: {where} is {node.dtype}{list(node.shape)} in the checkpoint, "
                f"the model has {x.dtype}{list(x.shape)}"
            )
        return jnp.asarray(node)

    return jax.tree_util.tree_map_with_path(one, like)
