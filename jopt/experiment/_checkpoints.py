"""A member's checkpoints: when they are due, what a save writes, how a resume reads one back.

On disk a checkpoint holds one member, unstacked (``{"state": ..., "best": (params,
model_state)}`` through ``jopt.distributed.save_checkpoint``) plus a ``.json`` beside it with
the member's bookkeeping, the training time, the steps per epoch and the precision. The group
holds the state stacked on a leading member axis: :func:`restore_stacked` reads a member's
checkpoint back into that axis (with the shardings of a distributed run's state).
"""

from __future__ import annotations

import os
from typing import Any

import jax

from jopt.core.errors import JoptError
from jopt.distributed import epoch_checkpoint_path, restore_checkpoint, save_checkpoint
from jopt.experiment import _artifacts as art
from jopt.experiment._member import Member
from jopt.experiment._schema import Config


def checkpoint_due(config: Config, epoch: int, force: bool = False) -> bool | None:
    """None when ``output.checkpoints`` is off; else whether ``epoch`` is on the
    ``train.checkpoint_every`` cadence (always with ``force``)."""
    if not config.output.checkpoints:
        return None
    every = config.train.checkpoint_every
    return bool(force or (every and epoch % every == 0))


def save_member(mb: Member, epoch: int, state: Any, record: dict, where: Any = None) -> None:
    """Write member ``mb``'s ``state`` (one member, unstacked) as the checkpoint of ``epoch``
    (at ``where``, else ``epoch_checkpoint_path``), with its best epoch's ``(params,
    model_state)``; the process that writes adds the ``.json`` (``mb.bookkeeping()`` and
    ``record``)."""
    best = mb.best_vars if mb.best_vars is not None else (state.params, state.model_state)
    tree = {"state": state, "best": best}
    where = epoch_checkpoint_path(mb.run_dir, epoch) if where is None else where
    path = str(save_checkpoint(where, tree))
    if mb.writes:
        art.write_json(path + ".json", {"epoch": epoch, **mb.bookkeeping(), **record})


def check_precision(path: str, now: dict) -> None:
    """Refuse a checkpoint written under another precision than ``now`` (``Precision.
    describe()``): its arrays have other dtypes and meanings."""
    book = path + ".json"
    recorded = art.read_json(book).get("precision") if os.path.exists(book) else None
    keys = ("precision", "matmul_precision")
    if recorded is not None and any(recorded.get(k) != now[k] for k in keys):
        raise JoptError(
            f"{os.path.basename(path)} was written under precision {recorded.get('precision')}"
            f" (matmul {recorded.get('matmul_precision')}), the run now asks for "
            f"{now['precision']} (matmul {now['matmul_precision']}); resume with the "
            "precision it was trained in"
        )


def _drop_leading(sharding: Any) -> Any:
    """The sharding of one member of an array stacked on a leading member axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec[1:]))
    return sharding


def restore_stacked(path: str, stacked: Any) -> tuple[Any, Any]:
    """``(state, best)`` of the one-member checkpoint at ``path``, the state stacked on a
    leading axis of one with ``stacked``'s shardings (the group's current state), ``best`` as
    saved."""
    one = jax.tree.map(lambda a: a[0], stacked)  # arrays: a PRNG key keeps its impl
    shardings = jax.tree.map(lambda a: a.sharding, stacked)
    like = {"state": one, "best": (one.params, one.model_state)}
    member_sh = jax.tree.map(_drop_leading, shardings)
    tree = restore_checkpoint(
        path, like, {"state": member_sh, "best": (member_sh.params, member_sh.model_state)}
    )
    stack = jax.jit(lambda s: jax.tree.map(lambda a: a[None], s), out_shardings=shardings)
    return stack(tree["state"]), tree["best"]
