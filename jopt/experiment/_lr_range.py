"""The learning-rate range test of a configured run (``jopt lr-find``).

The optimizer is the one ``jopt run`` trains (:func:`jopt.experiment.build_optimizer`: chain,
groups, weight decay, fused and the schedule's shape, built for the run's length). The range
test sweeps the *peak* learning rate: step ``t`` is multiplied by ``lrs[t] / learning_rate``,
so its effective step size is ``lrs[t] * schedule(t)`` and every group keeps its ratio to the
base learning rate (``lr_mult``), with decoupled weight decay scaled along. That equals setting
``learning_rate = lrs[t]`` for every optimizer whose update is linear in its learning rate
(all of jopt's). Data, model and loss come from :func:`jopt.experiment.setup`; each step
draws ``batching.batch_size`` random training examples (the whole set for ``full``). A test
problem (``problem: {name: rosenbrock}``) is its own loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.experiment._build import build_optimizer, setup
from jopt.experiment._schema import Config


def lr_find_optimizer(config: Config, lrs: Any, steps_per_epoch: int) -> Any:
    """The configured optimizer (:func:`build_optimizer`) with its peak learning rate at step
    ``t`` set to ``lrs[t]`` (held at the last value after the table ends)."""
    lr = float(config.optimizer.learning_rate)
    if not lr > 0:
        raise JoptError("lr-find scales optimizer.learning_rate, which must be > 0")
    table = jnp.asarray(np.asarray(lrs, np.float32) / np.float32(lr))
    steps = int(table.shape[0])

    def ramp(count):
        return table[jnp.minimum(count, steps - 1)]

    # unguarded (train.nonfinite: ignore): the range test must see the divergence it looks for
    train = dataclasses.replace(config.train, nonfinite="ignore")
    config = dataclasses.replace(config, train=train)
    return build_optimizer(config, steps_per_epoch=steps_per_epoch, lr_multiplier=ramp)


def lr_find_losses(config: Config, lrs: Any) -> np.ndarray:
    """Training losses ``[T]`` of the configured run while its peak learning rate follows
    ``lrs`` (see the module docstring)."""
    from jopt.experiment._problem import is_problem

    if is_problem(config):
        return _problem_curve(config, lrs)
    return _model_curve(config, lrs)


def _problem_curve(config: Config, lrs: Any) -> np.ndarray:
    from jopt.experiment._problem import get_config_problem
    from jopt.numerics import lr_find_run

    problem = get_config_problem(config)
    tx = lr_find_optimizer(config, lrs, 1)
    x0 = jnp.asarray(problem.x0)
    if problem.sample is not None:
        keys = jax.random.split(jax.random.key(config.seed), len(lrs))
        return np.asarray(lr_find_run(problem.sample, x0, tx, keys, len(lrs)))
    return np.asarray(lr_find_run(lambda x: problem.fn(x), x0, tx, None, len(lrs)))


def _model_curve(config: Config, lrs: Any) -> np.ndarray:
    from jopt.experiment._policy import config_precision
    from jopt.train import init_train_state, make_train_step, under_matmul_precision

    st = setup(config)
    x = np.asarray(st.data.x_train)
    y = np.asarray(st.data.y_train)
    n = len(y)
    b = n if config.batching.strategy == "full" else min(int(config.batching.batch_size), n)
    steps = len(lrs)
    tx = lr_find_optimizer(config, lrs, st.steps_per_epoch)
    step = make_train_step(st.model, tx, st.spec, augment=st.augment, kind=st.data.kind)
    step = under_matmul_precision(step, config_precision(config))  # train.precision, as jopt run
    key = jax.random.key(config.seed)
    k_init, _, k_run = jax.random.split(key, 3)
    state = init_train_state(st.model, tx, x[:1], k_init)
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, n, size=(steps, b)) if b < n else np.tile(np.arange(n), (steps, 1))
    xs = jnp.asarray(x[idx][:, None])  # [steps, 1, b, ...]: one micro-batch per step
    ys = jnp.asarray(y[idx][:, None])
    ws = jnp.ones((steps, 1, b), jnp.float32)

    def run(state, xs, ys, ws, keys):
        def body(s, inp):
            s, metrics = step(s, *inp)
            return s, metrics["loss"] + metrics["penalty"]

        return jax.lax.scan(body, state, (xs, ys, ws, keys))[1]

    return np.asarray(jax.jit(run)(state, xs, ys, ws, jax.random.split(k_run, steps)))
