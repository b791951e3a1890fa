"""Optimizers that need more than the gradient train by name from a config.

The train step passes every optimizer ``value=``, ``grad=``, ``value_fn=``/``obj_fn=`` and
``grad_fn=`` (jopt/train/_step.py). Each of polyak_sgd, lbfgs (full batch), sophia and sam
trains a tiny digits config and matches a hand-written loop that passes the same extra
arguments; packed and vmapped execution match per-leaf; unused closures cost nothing (the
traced step is the same); configs where re-evaluating the objective is ill-posed are refused
with one line.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
import jopt.experiment
from jopt.experiment import build_optimizer, load_config, setup, validate_config
from jopt.fused import packed_layout
from jopt.train import LossSpec, init_train_state, make_train_epoch, make_train_step

STEPS = 3
# Compile cost dominates these tests: XLA's cheap pipeline (as the parity test does).
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
CASES = {  # name: overrides (full batch: one step per epoch, so STEPS epochs)
    "polyak_sgd": ["optimizer.learning_rate=0.5"],
    "lbfgs": [
        "optimizer.learning_rate=1.0",
        "schedule.name=constant",
    ],
    "sophia": ["optimizer.learning_rate=0.01"],
    "sam": ["optimizer.learning_rate=0.1", "optimizer.rho=0.05"],
}


def _config(name, *over):
    return load_config(
        "configs/quickstart.yaml",
        [
            f"optimizer.name={name}",
            "model.hidden=[8]",
            "regularization.dropout=0",
            "batching.strategy=full",
            "train.nonfinite=ignore",
            f"train.epochs={STEPS}",
            *CASES.get(name, []),
            *over,
        ],
    )


@pytest.fixture(scope="module")
def data():
    return setup(_config("sgd")).data


_RUNS: dict = {}


def _runner(config, data, layout=False):
    key = (jopt.experiment.structure_key(config), str(config.optimizer), layout)
    if key not in _RUNS:
        _RUNS[key] = _run(config, data, layout)
    return _RUNS[key]


def _run(config, data, layout):
    s = setup(config, data)
    tx = build_optimizer(config, steps_per_epoch=s.steps_per_epoch, total_steps=STEPS)
    state = init_train_state(s.model, tx, data.x_train[:1], jax.random.key(0))
    lay = packed_layout(tx, state.params) if layout else None
    epoch = make_train_epoch(s.model, tx, s.spec, s.batching, layout=lay)
    epoch = jax.jit(epoch, compiler_options=FAST)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    for _ in range(STEPS):
        state, _ = epoch(state, x, y)
    return state.params


def _hand(config, data):
    """The objective and the extra arguments written out: full-batch mean cross-entropy."""
    s = setup(config, data)
    tx = build_optimizer(config, steps_per_epoch=s.steps_per_epoch, total_steps=STEPS)
    params = init_train_state(s.model, tx, data.x_train[:1], jax.random.key(0)).params
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    onehot = jax.nn.one_hot(y, 10, dtype=jnp.float32)

    def f(p, **_):
        out = s.model.apply({"params": p}, x, train=True)
        return jnp.mean(optax.softmax_cross_entropy(out, onehot))

    @functools.partial(jax.jit, compiler_options=FAST)
    def step(p, st):
        v, g = jax.value_and_grad(f)(p)
        extra = dict(grad=g, value_fn=f, obj_fn=f, grad_fn=lambda q, i: jax.grad(f)(q))
        u, st = tx.update(g, st, p, value=v, **extra)
        return jopt.apply_updates(p, u), st

    st, start = tx.init(params), params
    for _ in range(STEPS):
        params, st = step(params, st)
    return start, params


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_trains_from_a_config_like_the_hand_loop(name, data):
    config = _config(name)
    validate_config(config, paths=False)
    ours, (start, theirs) = _runner(config, data), _hand(config, data)
    moved = [
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(ours), strict=True)
    ]
    assert max(moved) > 1e-3, name  # the optimizer did something
    _close(ours, theirs)


def test_packed_matches_per_leaf(data):
    # sam (opaque) evaluates grad_fn on the packed buffers
    config = _config("sam")
    _close(_runner(config, data, layout=True), _runner(config, data))


def test_vmapped_learning_rates_match_single_runs(data):
    # a sweep vmaps the epoch over members whose hyperparameters live in the state
    config = _config("sam")
    s = setup(config, data)
    tx = build_optimizer(config, steps_per_epoch=1, total_steps=STEPS)
    state = init_train_state(s.model, tx, data.x_train[:1], jax.random.key(0))
    lrs = (0.1, 0.3)
    states = [
        state._replace(opt_state=jopt.set_hparams(state.opt_state, **{"sam/learning_rate": lr}))
        for lr in lrs
    ]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    epoch = make_train_epoch(s.model, tx, s.spec, s.batching)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    vm = jax.jit(jax.vmap(epoch, in_axes=(0, None, None)), compiler_options=FAST)
    for _ in range(STEPS):
        stacked, _ = vm(stacked, x, y)
    for i, lr in enumerate(lrs):
        single = _runner(_config("sam", f"optimizer.learning_rate={lr}"), data)
        _close(jax.tree.map(lambda v, i=i: v[i], stacked.params), single)


def test_unused_extra_arguments_cost_nothing(data):
    # adam ignores value_fn/obj_fn/grad_fn: the traced step equals one whose optimizer is
    # never offered them (the closures are never traced)
    s = setup(_config("adam"), data)
    spec = LossSpec(task="classification", num_classes=10, l2=1e-3)
    adam = jopt.adam(1e-3)
    blind = jopt.GradientTransformation(adam.init, lambda u, st, p=None, **_: adam.update(u, st, p))
    x, y = jnp.asarray(data.x_train[:8])[None], jnp.asarray(data.y_train[:8])[None]
    w = jnp.ones((1, 8), jnp.float32)

    def jaxpr(tx):
        state = init_train_state(s.model, tx, data.x_train[:1], jax.random.key(0))
        step = make_train_step(s.model, tx, spec)
        return str(jax.make_jaxpr(step)(state, x, y, w, jax.random.key(1)))

    assert jaxpr(adam) == jaxpr(blind)


@pytest.mark.parametrize(
    ("name", "over", "match"),
    [
        ("lbfgs", ["batching.strategy=minibatch"], "batching.strategy: lbfgs needs full"),
        ("lbfgs", ["schedule.name=cosine"], "schedule.name: lbfgs needs constant"),
        ("lbfgs", ["regularization.dropout=0.2"], "lbfgs needs a deterministic objective"),
        ("lbfgs", ["regularization.weight_decay=0.1"], "weight_decay: lbfgs needs 0"),
        ("lbfgs", ["optimizer.linesearch=wolfe"], "linesearch must be one of"),
        ("sam", ["optimizer.execution=fused"], "optimizer.execution: fused"),
        ("sam", ["optimizer.base=sam"], "optimizer.base: 'sam' is not an optimizer"),
        ("sophia", ["optimizer.groups=[{pattern: '**', lr_mult: 1.0}]"], "optimizer.groups"),
        ("normalize", [], "is not an optimizer: it is SAM's adversarial step"),
    ],
)
def test_ill_posed_configs_are_refused_in_one_line(name, over, match):
    with pytest.raises(jopt.JoptError, match=match) as e:
        validate_config(_config(name, *over), paths=False)
    assert "\n" not in str(e.value)


def test_helpers_are_not_listed_as_optimizers():
    from jopt.experiment import listing

    names = listing()["optimizers"]
    assert {"polyak_sgd", "lbfgs", "sophia", "sam", "mechanize", "schedule_free"} <= set(names)
    assert not {"normalize", "scale_by_sophia", "asgd_averaged_params"} & set(names)
