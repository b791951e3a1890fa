"""The runner's set-up in separate steps: build, initialise, place, compile, each on its own;
a single run is a group of one (a leading member axis of size 1), bit for bit an unmapped run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from jopt.combinators import get_hparams
from jopt.experiment import build_optimizer, config_from_dict, replace_dotted, setup
from jopt.experiment._checkpoints import checkpoint_due
from jopt.experiment._program import (
    build_program,
    compile_group,
    init_group,
    member_slice,
    over_members,
    place_group,
)

RAW = {
    "data": {"name": "iris", "val_fraction": 0.2, "test_fraction": 0.0},
    "model": {"name": "mlp", "hidden": [4]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "batching": {"strategy": "minibatch", "batch_size": 16},
    "train": {"epochs": 2},
    "output": {"progress": False},
}


@pytest.fixture(scope="module")
def parts():
    config = config_from_dict(RAW)
    other = replace_dotted(config, {"optimizer.learning_rate": 0.1, "seed": 1})
    return config, other, setup(config)


def test_build_is_pure_functions(parts):
    config, _, st = parts
    one, two = build_program(config, st), build_program(config, st, K=2)
    assert one.K == 1 and two.K == 2
    ref = jax.tree.structure(jax.eval_shape(build_optimizer(config).init, {"w": jnp.ones(3)}))
    assert jax.tree.structure(jax.eval_shape(one.tx.init, {"w": jnp.ones(3)})) == ref
    # K = 2 maps the same epoch over a leading member axis (shapes only: nothing runs)
    state, _ = init_group(two, [config, config], st.data.x_train[:1])
    out_state, metrics = jax.eval_shape(two.epoch_fn, state, st.data.x_train, st.data.y_train)
    assert metrics["train_loss"].shape == (2,)
    assert jax.tree.structure(out_state) == jax.tree.structure(state)


def test_init_writes_each_members_seed_and_hyperparameters(parts):
    config, other, st = parts
    program = build_program(config, st, K=2)
    state, placed = init_group(program, [config, other], st.data.x_train[:1])
    assert not placed
    lrs = np.asarray(get_hparams(state.opt_state)["adam/learning_rate"])
    np.testing.assert_allclose(lrs, [0.01, 0.1], rtol=1e-6)
    kernel = np.asarray(jax.tree.leaves(state.params)[1])
    assert kernel.shape[0] == 2 and not np.array_equal(kernel[0], kernel[1])  # two seeds


def test_place_on_one_device_and_on_a_mesh(parts):
    from jopt.distributed import DataParallel, make_data_mesh

    config, _, st = parts
    program = build_program(config, st)
    state, _ = init_group(program, [config], st.data.x_train[:1])
    x, y = jnp.asarray(st.data.x_train), jnp.asarray(st.data.y_train)
    same = place_group(state, x, y, {})
    assert same[0] is state and same[1] is x
    dp = DataParallel(make_data_mesh(1))
    placed, px, _, splits = place_group(state, x, y, {"val": (x[:4], y[:4])}, dp)
    assert all(isinstance(a.sharding, NamedSharding) for a in jax.tree.leaves(placed.params))
    assert isinstance(px.sharding, NamedSharding) and set(splits) == {"val"}


def test_compile_gives_an_epoch_and_one_evaluation_program(parts):
    config, other, st = parts
    program = build_program(config, st, K=2)
    state, _ = init_group(program, [config, other], st.data.x_train[:1])
    x, y = jnp.asarray(st.data.x_train), jnp.asarray(st.data.y_train)
    xv, yv = (jnp.asarray(a) for a in st.data.split("val"))
    epoch, evaluate = compile_group(program, state, x, y, {"val": (xv, yv)})
    state, metrics = epoch(state, x, y)
    assert np.all(np.isfinite(np.asarray(metrics["train_loss"])))
    assert int(np.asarray(state.step)[0]) == st.steps_per_epoch
    res = evaluate(state.params, state.model_state, state.opt_state, {"val": (xv, yv)})
    assert np.asarray(res["val"]["loss"]).shape == (2,)


def test_a_group_of_one_is_an_unmapped_run_bit_for_bit(parts):
    from jopt.experiment import config_precision
    from jopt.train import init_train_state, make_train_epoch, under_matmul_precision

    config, _, st = parts
    program = build_program(config, st)
    state, _ = init_group(program, [config], st.data.x_train[:1])
    assert np.shape(state.step) == (1,)  # the member axis, also for one member
    x, y = jnp.asarray(st.data.x_train), jnp.asarray(st.data.y_train)
    one = init_train_state(program.model, program.tx, x[:1], jax.random.key(config.seed))
    plain = make_train_epoch(
        program.model,
        program.tx,
        st.spec,
        st.batching,
        augment=st.augment,
        kind=st.data.kind,
        layout=program.layout,
    )
    plain = under_matmul_precision(plain, config_precision(config))
    ref, ref_metrics = jax.jit(plain)(one, x, y)
    group, metrics = jax.jit(program.epoch_fn)(state, x, y)
    assert metrics["train_loss"].shape == (1,)
    assert float(metrics["train_loss"][0]) == float(ref_metrics["train_loss"])
    member = member_slice(group, 0)  # what a checkpoint holds: the unstacked member
    assert jax.tree.structure(member) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(member.params), jax.tree.leaves(ref.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    double = over_members(lambda s, c: (s, c), 1, (0, None))(state.step, jnp.int32(3))
    assert double[0].shape == (1,) and double[1].shape == (1,)


def test_checkpoint_cadence(parts):
    config, _, _ = parts
    every = replace_dotted(config, {"train.checkpoint_every": 2})
    assert [checkpoint_due(every, e) for e in (1, 2, 3, 4)] == [False, True, False, True]
    assert checkpoint_due(every, 3, force=True)
    off = replace_dotted(config, {"output.checkpoints": False})
    assert checkpoint_due(off, 2, force=True) is None
