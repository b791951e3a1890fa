"""The training engine: batching strategies, exact gradients, accumulation, early stopping,
augmentation isolation, penalties, losses against optax, vmap, and errors before training."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt import JoptError
from jopt.data import Augment, Batching, load_dataset
from jopt.models import make_model
from jopt.train import (
    EarlyStopping,
    LossSpec,
    cross_entropy,
    fit,
    huber,
    init_train_state,
    make_eval_fn,
    make_train_epoch,
    make_train_step,
    mse,
    one_hot_targets,
    penalty,
)


@pytest.fixture(autouse=True, scope="module")
def _highest_matmul_precision():
    """These tests compare mathematically equal computations (full batch vs per-example
    gradients, accumulation vs one big batch, closed forms). On GPU/TPU float32 matmuls default
    to TF32/bfloat16 passes (errors ~1e-3); ask for full float32 here. On CPU nothing changes."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def iris():
    return load_dataset("iris", seed=0, val_fraction=0.2, test_fraction=0.2)


@pytest.fixture(scope="module")
def mlp():
    return make_model("mlp", num_outputs=3, hidden=[8])


@pytest.fixture(scope="module")
def spec():
    return LossSpec(task="classification", num_classes=3)


@pytest.fixture(scope="module")
def evaluate(mlp, spec):
    """One jitted evaluation shared by the tests (val and test have the same shape)."""
    return jax.jit(make_eval_fn(mlp, spec))


def _state(model, tx, ds, seed=0):
    return init_train_state(model, tx, ds.x_train[:1], jax.random.key(seed))


@jax.jit(static_argnums=0)
def _ref_grad(model, params, x, y):
    """Full-batch gradient computed independently with optax's cross-entropy."""

    def loss(p):
        logits = model.apply({"params": p}, x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.grad(loss)(params)


def _close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=rtol, atol=atol), a, b)


# ----- batching strategies --------------------------------------------------------------

CASES = [
    # (strategy, batch_size, k, remainder, documented steps per epoch for n examples)
    ("full", 32, 1, "drop", lambda n: 1),
    ("minibatch", 16, 1, "drop", lambda n: n // 16),
    ("minibatch", 16, 1, "pad", lambda n: math.ceil(n / 16)),
    ("stochastic", 32, 1, "drop", lambda n: n),
    ("accumulate", 8, 2, "drop", lambda n: n // 16),
    ("accumulate", 8, 2, "pad", lambda n: math.ceil(n / 16)),
]


@pytest.mark.parametrize("strategy,b,k,rem,expected", CASES)
def test_steps_per_epoch(iris, mlp, spec, strategy, b, k, rem, expected):
    n = len(iris.y_train)
    batching = Batching(strategy, batch_size=b, accumulate_steps=k, remainder=rem)
    assert batching.steps_per_epoch(n) == expected(n)
    tx = jopt.sgd(0.1)
    # Tracing (no compile) shows the scan length: one per-step loss per optimizer step.
    epoch = make_train_epoch(mlp, tx, spec, batching)
    m = jax.eval_shape(epoch, _state(mlp, tx, iris), iris.x_train, iris.y_train)[1]
    assert m["step_loss"].shape == (expected(n),)
    # every example is used at most once per epoch; with full / pad / stochastic exactly once
    idx, w = batching.plan(jax.random.key(1), n)
    used = np.asarray(idx)[np.asarray(w) > 0]
    assert len(np.unique(used)) == len(used)
    if strategy in ("full", "stochastic") or rem == "pad":
        np.testing.assert_array_equal(np.sort(used), np.arange(n))


def test_full_batch_is_the_exact_full_batch_gradient(iris, mlp, spec):
    tx = jopt.sgd(1.0)  # params_new = params - grad
    state = _state(mlp, tx, iris)
    params0 = jax.tree.map(jnp.copy, state.params)
    epoch = jax.jit(make_train_epoch(mlp, tx, spec, Batching("full")))
    state, m = epoch(state, iris.x_train, iris.y_train)
    step_grad = jax.tree.map(jnp.subtract, params0, state.params)
    _close(step_grad, _ref_grad(mlp, params0, iris.x_train, iris.y_train), rtol=1e-4)
    ref_loss = optax.softmax_cross_entropy_with_integer_labels(
        mlp.apply({"params": params0}, iris.x_train), iris.y_train
    ).mean()
    np.testing.assert_allclose(m["train_loss"], ref_loss, rtol=1e-6)


def test_padding_mask_averages_over_real_examples_only(iris, mlp, spec):
    tx = jopt.sgd(1.0)
    state = _state(mlp, tx, iris)
    params0 = jax.tree.map(jnp.copy, state.params)
    step = jax.jit(make_train_step(mlp, tx, spec))
    x, y = iris.x_train[:10], iris.y_train[:10]
    w = jnp.asarray([1.0] * 6 + [0.0] * 4)  # the last 4 are padding
    state, _ = step(state, x[None], y[None], w[None], jax.random.key(0))
    got = jax.tree.map(jnp.subtract, params0, state.params)
    _close(got, _ref_grad(mlp, params0, x[:6], y[:6]), rtol=1e-4)


@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_accumulate_equals_minibatch_with_k_times_the_batch(iris, mlp, spec, remainder):
    tx = jopt.adam(1e-2)
    k, b = 3, 8
    acc = make_train_epoch(mlp, tx, spec, Batching("accumulate", b, k, remainder))
    big = make_train_epoch(mlp, tx, spec, Batching("minibatch", k * b, 1, remainder))
    s_acc, m_acc = jax.jit(acc)(_state(mlp, tx, iris), iris.x_train, iris.y_train)
    s_big, m_big = jax.jit(big)(_state(mlp, tx, iris), iris.x_train, iris.y_train)
    n = len(iris.y_train)
    assert (
        int(s_acc.step)
        == int(s_big.step)
        == Batching("minibatch", k * b, 1, remainder).steps_per_epoch(n)
    )
    _close(s_acc.params, s_big.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m_acc["step_loss"], m_big["step_loss"], rtol=1e-5)


def test_epoch_vmaps_over_states_for_sweeps(iris, mlp, spec):
    tx = jopt.sgd(0.1)
    epoch = make_train_epoch(mlp, tx, spec, Batching("minibatch", 30))
    states = [_state(mlp, tx, iris, seed) for seed in (0, 1)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
    batched, m = jax.jit(jax.vmap(epoch, in_axes=(0, None, None)))(
        stacked, iris.x_train, iris.y_train
    )
    single, m1 = jax.jit(epoch)(states[1], iris.x_train, iris.y_train)
    _close(jax.tree.map(lambda a: a[1], batched.params), single.params, rtol=1e-5)
    np.testing.assert_allclose(m["train_loss"][1], m1["train_loss"], rtol=1e-5)


# ----- penalties and losses ------------------------------------------------------------


def test_penalty_value_mask_and_gradient_in_the_step(iris, mlp):
    params = _state(mlp, jopt.sgd(1.0), iris).params
    w0, w1 = params["dense_0"]["kernel"], params["head"]["kernel"]
    expect = 0.1 * (jnp.abs(w0).sum() + jnp.abs(w1).sum()) + 0.5 * 0.2 * (
        (w0**2).sum() + (w1**2).sum()
    )
    np.testing.assert_allclose(penalty(params, l1=0.1, l2=0.2), expect, rtol=1e-6)
    g = jax.grad(lambda p: penalty(p, l2=0.2))(params)
    np.testing.assert_allclose(g["dense_0"]["kernel"], 0.2 * w0, rtol=1e-6)
    assert float(jnp.abs(g["dense_0"]["bias"]).sum()) == 0.0  # biases are excluded
    # inside the step: the update differs from the plain one by exactly lr * l2 * w on kernels
    plain = LossSpec(task="classification", num_classes=3)
    reg = dataclasses.replace(plain, l2=0.5)
    x, y, w = iris.x_train[None, :16], iris.y_train[None, :16], jnp.ones((1, 16))
    st = _state(mlp, jopt.sgd(0.1), iris)

    @jax.jit
    def both(st):
        steps = [make_train_step(mlp, jopt.sgd(0.1), s) for s in (plain, reg)]
        return [f(st, x, y, w, jax.random.key(0))[0].params for f in steps]

    outs = both(st)
    diff = jax.tree.map(jnp.subtract, outs[0], outs[1])
    np.testing.assert_allclose(diff["dense_0"]["kernel"], 0.1 * 0.5 * w0, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(diff["dense_0"]["bias"], 0.0, atol=1e-7)


def test_losses_match_optax(key):
    k1, k2, k3 = jax.random.split(key, 3)
    logits = jax.random.normal(k1, (6, 4))
    labels = jnp.asarray([0, 3, 1, 2, 2, 1])
    t = one_hot_targets(labels, 4, 0.1)
    ref = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 4), 0.1))
    np.testing.assert_allclose(cross_entropy(logits, t), ref, rtol=1e-6)
    pred, y = 3 * jax.random.normal(k2, (6,)), jax.random.normal(k3, (6,))
    np.testing.assert_allclose(huber(pred, y, 0.7), optax.huber_loss(pred, y, delta=0.7), rtol=1e-6)
    np.testing.assert_allclose(mse(pred[:, None], y), optax.squared_error(pred, y), rtol=1e-6)


# ----- fit: early stopping, augmentation isolation, dropout, logging ----------------------


def test_early_stopping_restores_the_best_epoch(iris, mlp, evaluate):
    # "max" on a loss that keeps falling makes epoch 1 the best: patience 2 then stops at 3.
    es = EarlyStopping(metric="val_loss", patience=2, mode="max")
    r = fit(
        mlp,
        jopt.adam(1e-2),
        iris,
        epochs=10,
        batching=Batching("minibatch", 30),
        early_stopping=es,
        eval_splits=("val",),
    )
    assert r.stopped_early and r.best_epoch == 1 and len(r.history) == 3
    assert r.history[2]["val_loss"] < r.history[0]["val_loss"]
    restored = evaluate(r.state.params, r.state.model_state, iris.x_val, iris.y_val)
    np.testing.assert_allclose(restored["loss"], r.history[0]["val_loss"], rtol=1e-6)


def test_early_stopping_patience_on_a_natural_minimum():
    # Overfitting a tiny noisy problem: val loss reaches a minimum, then rises.
    ds = load_dataset("two_moons", seed=0, n=80, noise=0.45, val_fraction=0.4, test_fraction=0.1)
    model = make_model("mlp", num_outputs=2, hidden=[64, 64])
    r = fit(
        model,
        jopt.adam(3e-2),
        ds,
        epochs=60,
        batching=Batching("full"),
        early_stopping=EarlyStopping("val_loss", patience=5),
        eval_splits=("val",),
    )
    losses = [h["val_loss"] for h in r.history]
    assert r.best_epoch == int(np.argmin(losses)) + 1
    assert r.stopped_early and len(r.history) == r.best_epoch + 5


def test_augmentation_never_touches_eval_data(iris, mlp, evaluate):
    x_val, x_test = iris.x_val.copy(), iris.x_test.copy()
    seen = []
    r = fit(
        mlp,
        jopt.adam(1e-2),
        iris,
        epochs=2,
        batching=Batching("minibatch", 30),
        augment=Augment(noise_std=3.0),  # mixup maths: tests/test_data_augment.py
        on_epoch=lambda e, rec, st: seen.append(rec["epoch"]),
        eval_splits=("test",),
    )
    assert seen == [1, 2]
    np.testing.assert_array_equal(iris.x_val, x_val)
    np.testing.assert_array_equal(iris.x_test, x_test)
    # the logged test metrics are those of the clean test data under the final params
    clean = evaluate(r.state.params, r.state.model_state, iris.x_test, iris.y_test)
    np.testing.assert_allclose(clean["loss"], r.history[-1]["test_loss"], rtol=1e-6)
    np.testing.assert_allclose(clean["accuracy"], r.history[-1]["test_accuracy"], rtol=1e-6)


def test_dropout_is_off_at_evaluation(iris, mlp, spec, evaluate):
    drop = make_model("mlp", num_outputs=3, hidden=[8], dropout=0.5)
    params = _state(drop, jopt.sgd(0.1), iris).params  # same structure as the plain mlp's
    a = jax.jit(make_eval_fn(drop, spec))(params, {}, iris.x_val, iris.y_val)
    b = evaluate(params, {}, iris.x_val, iris.y_val)  # the same weights without dropout
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    np.testing.assert_allclose(a["accuracy"], b["accuracy"])
    # while training, dropout does change the outputs
    t1 = drop.apply({"params": params}, iris.x_val, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(t1, mlp.apply({"params": params}, iris.x_val))


def test_fit_logs_optimizer_hparams_and_regression_learns():
    ds = load_dataset("linear", seed=0, n=200, val_fraction=0.2)
    model = make_model("linear", num_outputs=1)
    tx = jopt.with_hparams(jopt.adam)(learning_rate=0.05)
    r = fit(
        model,
        tx,
        ds,
        epochs=8,
        batching=Batching("minibatch", 16),
        loss=LossSpec(task="regression", num_classes=1, loss="huber"),
        eval_splits=("val",),
    )
    assert r.history[-1]["hp/adam/learning_rate"] == pytest.approx(0.05)
    assert r.history[-1]["val_mse"] < 0.2 * r.history[0]["val_mse"]
    assert set(r.timings) == {"compile_s", "train_s", "eval_s", "steps_per_s"}


# ----- bad input is rejected before any training ----------------------------------------


def test_errors_before_training(iris, mlp):
    calls = []

    def cb(*a):
        calls.append(a)

    with pytest.raises(JoptError, match="larger than the training set"):
        fit(mlp, jopt.sgd(0.1), iris, epochs=1, batching=Batching("minibatch", 1000), on_epoch=cb)
    no_val = dataclasses.replace(iris, x_val=iris.x_val[:0], y_val=iris.y_val[:0])
    with pytest.raises(JoptError, match="needs a non-empty val split"):
        fit(mlp, jopt.sgd(0.1), no_val, epochs=1, early_stopping=EarlyStopping(), on_epoch=cb)
    with pytest.raises(JoptError, match="minimised or maximised"):
        EarlyStopping("val_f1")  # no guessing: a metric of unknown kind needs its mode
    with pytest.raises(JoptError, match="unknown early-stopping metric"):
        fit(mlp, jopt.sgd(0.1), iris, epochs=1, early_stopping=EarlyStopping("val_f1", mode="max"))
    bad = dataclasses.replace(iris, y_train=np.where(iris.y_train == 2, 7, iris.y_train))
    with pytest.raises(JoptError, match="labels out of range"):
        fit(mlp, jopt.sgd(0.1), bad, epochs=1, on_epoch=cb)
    nan = iris.x_train.copy()
    nan[3, 1] = np.nan
    with pytest.raises(JoptError, match="NaN"):
        fit(mlp, jopt.sgd(0.1), dataclasses.replace(iris, x_train=nan), epochs=1, on_epoch=cb)
    with pytest.raises(JoptError, match="max_shift needs image or signal"):
        fit(mlp, jopt.sgd(0.1), iris, epochs=1, augment=Augment(max_shift=1), on_epoch=cb)
    with pytest.raises(JoptError, match="cross_entropy needs a classification"):
        LossSpec(task="regression", num_classes=1, loss="cross_entropy")
    with pytest.raises(JoptError, match="unknown loss"):
        LossSpec(task="classification", num_classes=3, loss="hinge")
    assert calls == []
