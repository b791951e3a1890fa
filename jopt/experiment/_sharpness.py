"""``diagnostics.sharpness_every``: the top Hessian eigenvalue of each member's training loss
(``jopt.numerics.sharpness``) and the step size it allows, logged every N epochs."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jopt.experiment._build import Setup
from jopt.experiment._member import finite_float
from jopt.experiment._policy import config_precision
from jopt.experiment._schema import Config


def sharpness_fn(config: Config, setup: Setup) -> Any:
    """``(params, model_state, key) -> sharpness``, jitted: power iteration on the training
    loss of the first (at most 1024) training examples, under the run's matmul precision."""
    import jopt.numerics as jn
    from jopt.models import ModelAdapter
    from jopt.train import under_matmul_precision

    d = config.diagnostics
    model, spec = setup.model, setup.spec
    loss = "cross_entropy" if spec.loss == "cross_entropy" else "mse"
    n = min(len(setup.data.y_train), 1024)
    batches = jn.stack_batches(
        np.asarray(setup.data.x_train[:n]), np.asarray(setup.data.y_train[:n]), batch_size=n
    )

    def sharp(params, model_state, key):
        if isinstance(model, ModelAdapter):  # flax NNX, equinox: model state held fixed
            fn = jn.flax_loss_fn(model.as_linen(model_state), loss)
        else:
            fn = jn.flax_loss_fn(model, loss, model_state, train=False)
        return jn.sharpness(fn, params, batches, key=key, num_iters=d.sharpness_iters)

    return jax.jit(under_matmul_precision(sharp, config_precision(config)))


def sharpness_row(fn: Any, state: Any, seed: int, epoch: int, lr_now: float | None) -> dict:
    """One member's ``sharpness`` and ``stability_bound`` (2 / the current learning rate)."""
    lam = finite_float(fn(state.params, state.model_state, jax.random.key(seed + epoch)))
    return {"sharpness": lam, "stability_bound": 2.0 / lr_now if lr_now else None}
