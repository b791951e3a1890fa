"""One config builder: every command gets the same optimizer for the same config.

``jopt run`` and ``jopt sweep`` (the group trainer's program, K = 1 and K = 2), the
distributed path (a one-device ``DataParallel``, ZeRO off and on), ``jopt lr-find`` (its range
optimizer with the multiplier held at 1) and ``jopt bench train`` (its ``jopt`` implementation)
are compared on the quickstart parameters: same optimizer-state tree structure and the same
first two updates, bit for bit. Variants add a chain, weight decay, a warm-up schedule, parameter
groups and a frozen group, all of which lr-find and bench used to drop.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jopt import JoptError
from jopt.experiment import bench_optimizers, build_optimizer, load_config, setup
from jopt.experiment._lr_range import lr_find_optimizer
from jopt.experiment._program import build_program
from jopt.train import init_train_state

QUICKSTART = "configs/quickstart.yaml"
VARIANTS = {
    "quickstart": [],
    "chain+wd+warmup": [
        "optimizer.chain=[{name: clip_by_global_norm, max_norm: 0.5}]",
        "regularization.weight_decay=0.1",
        "schedule.name=warmup_cosine",
        "schedule.warmup_steps=5",
        "optimizer.b1=0.8",
    ],
    "groups": ["optimizer.groups=[{pattern: 'head/**', lr_mult: 0.1}]"],
    "freeze": ["optimizer.groups=[{pattern: 'dense_0/**', freeze: true}]"],
}


@pytest.fixture(scope="module")
def base_setup():
    return setup(load_config(QUICKSTART))


def _unguarded(config):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, nonfinite="ignore"))


def _paths(config, st):
    """``{command path: optimizer}`` for one config."""
    from jopt.distributed import DataParallel, make_data_mesh

    lrs = np.full(8, config.optimizer.learning_rate, np.float32)
    one = make_data_mesh(1)
    return {
        "run": build_program(config, st).tx,
        "sweep": build_program(config, st, K=2).tx,
        "distributed": build_program(config, st, parallel=DataParallel(one, zero=0)).tx,
        # lr-find is compared with the unguarded run (below): it builds with train.nonfinite:
        # ignore on purpose, since the range test must see the divergence it looks for
        "lr-find": lr_find_optimizer(config, lrs, st.steps_per_epoch),
        "run (nonfinite: ignore)": build_program(_unguarded(config), st).tx,
        "bench train": bench_optimizers(config, ["jopt"], st.steps_per_epoch)["jopt"],
    }


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_command_builds_the_same_optimizer(variant, base_setup):
    config = load_config(QUICKSTART, VARIANTS[variant])
    st = base_setup
    tx = build_optimizer(config)
    params = init_train_state(st.model, tx, st.data.x_train[:1], jax.random.key(0)).params
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    grads = jax.tree.unflatten(
        treedef, [jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves, strict=True)]
    )
    results = {}
    for name, tx in _paths(config, st).items():
        s0 = tx.init(params)
        update = jax.jit(tx.update)
        u1, s1 = update(grads, s0, params)
        u2, s2 = update(grads, s1, params)  # a warm-up schedule gives a zero first step
        results[name] = (jax.tree.structure(s0), jax.tree.structure(s2), (u1, u2))
    refs = {"run": results.pop("run"), "unguarded": results.pop("run (nonfinite: ignore)")}
    _, _, ref_u = refs["run"]
    moved = sum(float(jnp.sum(jnp.abs(x))) for x in jax.tree.leaves(ref_u))
    assert moved > 0
    for name, (s0, s1, u) in results.items():
        r0, r1, ru = refs["unguarded" if name == "lr-find" else "run"]
        assert s0 == r0 and s1 == r1, name
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ru), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    # the guard is the only difference: unguarded and guarded runs update identically here
    for a, b in zip(jax.tree.leaves(refs["unguarded"][2]), jax.tree.leaves(ref_u), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if variant == "freeze":
        np.testing.assert_array_equal(np.asarray(ref_u[1]["dense_0"]["kernel"]), 0.0)


def test_problem_paths_build_the_same_optimizer():
    """A test problem: ``jopt run``/``compare`` (the problem runner) and lr-find."""
    from jopt.numerics import get_problem

    config = load_config("configs/rosenbrock.yaml")
    steps = int(config.train.steps or config.train.epochs)
    run_tx = build_optimizer(_unguarded(config), steps_per_epoch=1, total_steps=steps)
    lrs = np.full(6, config.optimizer.learning_rate, np.float32)
    find_tx = lr_find_optimizer(config, lrs, 1)
    x = jnp.asarray(get_problem(config.problem.name).x0)
    g = jnp.asarray([0.3, -0.7], x.dtype)
    s_run, s_find = run_tx.init(x), find_tx.init(x)
    for _ in range(3):  # a few steps: the schedule position matters
        u_run, s_run = run_tx.update(g, s_run, x)
        u_find, s_find = find_tx.update(g, s_find, x)
        np.testing.assert_array_equal(np.asarray(u_run), np.asarray(u_find))


def test_lr_find_needs_a_positive_learning_rate():
    config = load_config(QUICKSTART, ["optimizer.learning_rate=0.0"])
    with pytest.raises(JoptError, match="must be > 0"):
        lr_find_optimizer(config, np.ones(5, np.float32), 1)


def test_bench_optax_reference_refuses_what_it_cannot_mirror():
    config = load_config(QUICKSTART)  # quickstart has a cosine schedule
    with pytest.raises(JoptError, match="drop 'optax'"):
        bench_optimizers(config, ["optax"])
    plain = load_config(QUICKSTART, ["schedule.name=constant"])
    assert set(bench_optimizers(plain, ["grad", "optax", "jopt", "fused"])) == {
        "grad",
        "optax",
        "jopt",
        "fused",
    }
