"""Hooks that run the training engine's own ``fit`` data-parallel, without changing it.

``jopt.train.fit`` jits its epoch with no shardings of its own, so the placement of its
arguments decides everything: JAX compiles for the shardings the arguments carry. This module
therefore prepares the three things ``fit`` is given:

- the **state**, placed by :meth:`DataParallel.shard_state` (replicated, or ZeRO-1);
- the **data** splits, replicated on the mesh (every device can gather any shuffled minibatch;
  the data sets jopt trains on are small next to a device's memory);
- the **model**, wrapped so that its input batch carries a ``with_sharding_constraint`` along
  the data axis. That one constraint is what makes the step data-parallel: the forward and
  backward passes run on each device's slice of the batch, and the partitioner all-reduces the
  parameter gradients (they are replicated, like the parameters).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from jopt.core.errors import JoptError


class ShardedModel:
    """A flax module whose input batch is split over a mesh's data axis.

    It forwards ``init`` and ``apply`` (and any other attribute) to ``module`` and constrains
    the leading axis of the input when it divides evenly; other batches (a one-row init sample,
    an odd-sized evaluation split) run unsplit. Parameters are exactly the module's own.
    """

    def __init__(self, module: Any, sharding: NamedSharding):
        self.module = module
        self.sharding = sharding
        self.size = int(sharding.mesh.shape[sharding.spec[0]])

    def constrain(self, x: Any) -> Any:
        """``x`` with its leading axis split over the data axis, when it splits evenly."""
        if jnp.ndim(x) == 0 or jnp.shape(x)[0] % self.size:
            return x
        if not isinstance(x, jax.core.Tracer):
            return x  # eager call (init): nothing to partition
        return jax.lax.with_sharding_constraint(x, self.sharding)

    def init(self, rngs: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        return self.module.init(rngs, self.constrain(x), *args, **kwargs)

    def apply(self, variables: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        return self.module.apply(variables, self.constrain(x), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("module", "sharding", "size"):  # not set yet (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"ShardedModel({self.module!r}, data={self.size})"


def check_batching(batching: Any, num_train: int, data_size: int) -> None:
    """Raise :class:`jopt.JoptError` unless every micro-batch splits over the data axis."""
    _, _, micro = batching.shape(num_train)
    if micro % data_size:
        lo = micro - micro % data_size
        raise JoptError(
            f"batch size {micro} ({batching.strategy} batching) is not divisible by the "
            f"data-axis size {data_size}; use a multiple of {data_size} "
            f"(e.g. {lo or data_size} or {lo + data_size})"
        )


def place_dataset(data: Any, sharding: NamedSharding) -> Any:
    """A copy of a ``jopt.data.Dataset`` whose splits are jax arrays with ``sharding``."""
    fields = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    placed = {f: jax.device_put(getattr(data, f), sharding) for f in fields}
    return dataclasses.replace(data, **placed)
