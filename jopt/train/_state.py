"""The train state: everything a step reads and writes, as one pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jopt.models import ModelAdapter


class TrainState(NamedTuple):
    """One pytree, so it can be jitted with donation, vmapped over (sweeps) and sharded.

    Attributes:
        params: the model's ``"params"`` collection.
        opt_state: the optimizer's state (``tx.init(params)``).
        step: int32 count of optimizer steps taken.
        key: PRNG key consumed by shuffling, dropout and augmentation; split once per epoch.
        model_state: the model's other collections (``{"batch_stats": ...}`` for batch norm,
            ``{}`` otherwise); for NNX and equinox models, their non-parameter state
            (``jopt.models.ModelAdapter``).
    """

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array
    model_state: dict


def init_train_state(model: nn.Module, tx: Any, sample_x: ArrayLike, key: jax.Array) -> TrainState:
    """Initialize the model on ``sample_x`` (a batch, e.g. ``x_train[:1]``) and the optimizer.

    ``key`` is split into the init key, the init-time dropout key and the training key, so the
    whole run is a pure function of it.
    """
    k_init, k_drop, k_train = jax.random.split(key, 3)
    sample = jnp.asarray(sample_x, jnp.float32)
    if isinstance(model, ModelAdapter):  # flax NNX, equinox (jopt.models.adapt)
        params, variables = model.init(k_init, sample, dropout_key=k_drop)
    else:
        variables = model.init({"params": k_init, "dropout": k_drop}, sample, train=False)
        variables = dict(variables)
        params = variables.pop("params")
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        step=jnp.zeros((), jnp.int32),
        key=k_train,
        model_state=variables,
    )
