"""``jopt lr-find CONFIG [KEY=VALUE ...]``: the learning-rate range test for a configured run.

The config is loaded and validated by :mod:`jopt.experiment`; data, model and loss come from
the same builders ``jopt run`` uses, and the train step is :func:`jopt.train.make_train_step`.
The configured optimizer (``optimizer.name`` and its keyword arguments) is rebuilt with an
exponentially growing learning rate in place of ``learning_rate`` and the schedule; each step
draws a random batch of ``batching.batch_size`` training examples (the whole training set for
``batching.strategy: full``). For a test problem (``data.name: rosenbrock`` …) the objective
itself is the loss. Writes ``config.yaml``, ``lr_find.json`` and ``plots/lr_find.png`` to a
fresh run directory under ``output.runs_dir`` and prints the suggestion.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from jopt.core.errors import JoptError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optimizer.name=sgd",
    )
    parser.add_argument("--min-lr", type=float, default=1e-6, help="first learning rate")
    parser.add_argument("--max-lr", type=float, default=10.0, help="last learning rate")
    parser.add_argument("--steps", type=int, default=100, help="number of steps of the sweep")
    parser.add_argument(
        "--diverge",
        type=float,
        default=4.0,
        help="stop once the smoothed loss exceeds this multiple of its minimum",
    )
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="parent of the run directory (default: output.runs_dir of the config)",
    )


def _optimizer(config: Any, schedule: Any):
    from jopt.experiment import _registry as reg

    factory = reg.optimizer_factory(config.optimizer.name)
    try:
        return factory(learning_rate=schedule, **dict(config.optimizer.kwargs))
    except TypeError as e:
        raise JoptError(f"optimizer {config.optimizer.name}: {e}") from None


def _problem_curve(config: Any, lrs: np.ndarray) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from jopt.numerics._lr_find import lr_find_run
    from jopt.numerics.problems import get_problem

    problem = get_problem(config.data.name, **dict(config.data.options))
    if problem.sample is not None:
        key = jax.random.key(config.seed)
        keys = jax.random.split(key, len(lrs))
        return np.asarray(
            lr_find_run(
                problem.sample, jnp.asarray(problem.x0), lambda s: _optimizer(config, s), keys, lrs
            )
        )
    return np.asarray(
        lr_find_run(
            lambda x: problem.fn(x),
            jnp.asarray(problem.x0),
            lambda s: _optimizer(config, s),
            None,
            lrs,
        )
    )


def _model_curve(config: Any, lrs: np.ndarray) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from jopt.experiment._build import setup
    from jopt.train import init_train_state, make_train_step

    st = setup(config)
    x = np.asarray(st.data.x_train)
    y = np.asarray(st.data.y_train)
    n = len(y)
    b = n if config.batching.strategy == "full" else min(int(config.batching.batch_size), n)
    table = jnp.asarray(lrs, jnp.float32)
    steps = len(lrs)
    tx = _optimizer(config, lambda count: table[jnp.minimum(count, steps - 1)])
    step = make_train_step(st.model, tx, st.spec, augment=st.augment, kind=st.data.kind)
    key = jax.random.key(config.seed)
    k_init, k_batch, k_run = jax.random.split(key, 3)
    state = init_train_state(st.model, tx, x[:1], k_init)
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, n, size=(steps, b)) if b < n else np.tile(np.arange(n), (steps, 1))
    del k_batch
    xs = jnp.asarray(x[idx][:, None])  # [steps, 1, b, ...]: one micro-batch per step
    ys = jnp.asarray(y[idx][:, None])
    ws = jnp.ones((steps, 1, b), jnp.float32)

    def run(state, xs, ys, ws, keys):
        def body(s, inp):
            s, metrics = step(s, *inp)
            return s, metrics["loss"] + metrics["penalty"]

        return jax.lax.scan(body, state, (xs, ys, ws, keys))[1]

    return np.asarray(jax.jit(run)(state, xs, ys, ws, jax.random.split(k_run, steps)))


def main(args: argparse.Namespace) -> int:
    from jopt.experiment import dump_config, load_config, validate_config
    from jopt.experiment._artifacts import atomic_write, make_run_dir
    from jopt.experiment._registry import problem_names
    from jopt.numerics._lr_find import analyse_lr_curve, exponential_lrs, write_lr_find

    if "=" in args.config:
        raise JoptError(f"expected a config file first, got the override {args.config!r}")
    if not args.diverge > 1:
        raise JoptError(f"--diverge must be > 1, got {args.diverge}")
    config = load_config(args.config, args.overrides)
    validate_config(config)
    lrs = exponential_lrs(args.min_lr, args.max_lr, args.steps)
    if config.data.name in problem_names():
        losses = _problem_curve(config, lrs)
    else:
        losses = _model_curve(config, lrs)
    result = analyse_lr_curve(lrs, losses, diverge=args.diverge)
    run_dir = make_run_dir(args.runs_dir or config.output.runs_dir, f"{config.name}-lr-find")
    atomic_write(os.path.join(run_dir, "config.yaml"), dump_config(config))
    write_lr_find(result, run_dir, title=f"{config.name}: {config.optimizer.name} range test")
    end = f"diverged at step {result.diverged_at}" if result.diverged_at else "no divergence"
    print(
        f"suggested learning rate: {result.suggestion:.3g} "
        f"(loss minimum at {result.min_loss_lr:.3g}; {end})"
    )
    print(f"wrote {run_dir}")
    return 0
