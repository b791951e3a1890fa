"""The precision policy (issue 17): dtypes of parameters, optimizer state, activations, gradients
and losses under float32 / bf16_mixed / bf16, on flax models and on dict and tuple trees; the
matmul precision recorded in the traced program; packed execution, groups, accumulation and
skip-nonfinite under each policy; and bf16_mixed accuracy against float32 at small scale."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt.data import Batching, load_dataset
from jopt.fused import packed_train_step
from jopt.models import (
    PRECISIONS,
    CastModel,
    Precision,
    make_model,
    model_with_precision,
    precision_policy,
)
from jopt.train import (
    LossSpec,
    apply_model,
    apply_precision,
    cross_entropy,
    fit,
    init_train_state,
    make_eval_fn,
    make_train_step,
    one_hot_targets,
    precision_loss,
    precision_optimizer,
    under_matmul_precision,
)

F32, BF16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)
# policy -> (parameters, activations/compute, gradients)
EXPECT = {"float32": (F32, F32, F32), "bf16_mixed": (F32, BF16, F32), "bf16": (BF16, BF16, BF16)}


def _dtypes(tree):
    return {jnp.dtype(a.dtype) for a in jax.tree.leaves(tree)}


def _float_state_dtypes(state):
    return {
        jnp.dtype(a.dtype)
        for a in jax.tree.leaves(state)
        if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
    }


# --- the policy object -----------------------------------------------------------------------


def test_policy_resolves_dtypes_and_matmul_precision():
    assert EXPECT.keys() == set(PRECISIONS)
    for name, (param, compute, _) in EXPECT.items():
        p = Precision(name)
        assert (p.param_dtype, p.compute_dtype, p.loss_dtype) == (param, compute, F32)
        assert p.mixed == (name == "bf16_mixed")
    assert Precision("float32").matmul == "highest"
    assert Precision("bf16_mixed").matmul == "default"
    assert Precision("float32", "default").matmul == "default"  # TF32 allowed on GPUs
    assert precision_policy(None) == Precision("float32")
    assert precision_policy(Precision("bf16"), "high").matmul == "high"
    d = Precision("bf16_mixed").describe()
    assert d == {
        "precision": "bf16_mixed",
        "matmul_precision": "default",
        "param_dtype": "float32",
        "compute_dtype": "bfloat16",
        "state_dtype": "optimizer",
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: Precision("fp16"),
        lambda: Precision("float32", "tf32"),
        lambda: Precision("bf16", state_dtype="int8"),
        lambda: Precision("bf16", state_dtype="nope"),
        lambda: precision_policy(16),
        lambda: make_model("mlp", num_outputs=2, precision="bf16", dtype="float32"),
        lambda: make_model("mlp", num_outputs=2, dtype="int32"),
        lambda: make_model("mlp", num_outputs=2, param_dtype=None),
        lambda: make_model("cnn", num_outputs=2, precision="half"),
    ],
)
def test_bad_precision_is_refused_in_one_line(make):
    with pytest.raises(jopt.JoptError) as e:
        make()
    assert "\n" not in str(e.value)


# --- built-in flax models --------------------------------------------------------------------

MODELS = [
    ("linear", {}),
    ("mlp", {"hidden": (8,), "norm": "layer", "dropout": 0.1}),
    ("cnn", {"channels": (4,), "kernel_size": 3, "dense": 8, "norm": "batch"}),
]


@pytest.mark.parametrize("policy", PRECISIONS)
@pytest.mark.parametrize("name,opts", MODELS, ids=[f"{n}-{o.get('norm')}" for n, o in MODELS])
def test_builtin_model_dtypes(policy, name, opts):
    p = Precision(policy)
    param, compute, grad = EXPECT[policy]
    model = make_model(name, num_outputs=3, precision=p, **opts)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 16)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)
    tx = precision_optimizer(jopt.adam(1e-3), p)
    state = init_train_state(model, tx, x[:1], jax.random.key(0))
    assert _dtypes(state.params) == {param}
    assert _dtypes(state.model_state) <= {F32}  # batch-norm running statistics stay float32
    assert _float_state_dtypes(state.opt_state) == {F32}

    @jax.jit
    def probe(prm, model_state):
        # Activations: the output of every layer (captured by flax) is in the compute dtype.
        out, inter = model.apply(
            {"params": prm, **model_state},
            x,
            train=False,
            capture_intermediates=True,
            mutable=["intermediates"],
        )

        # Gradients have the master dtype; the loss is float32.
        def objective(q):
            logits, _ = apply_model(model, q, model_state, x, train=True, key=jax.random.key(1))
            return jnp.mean(cross_entropy(logits, one_hot_targets(y, 3)))

        return out, inter, jax.value_and_grad(objective)(prm)

    out, inter, (loss, g) = probe(state.params, state.model_state)
    assert out.dtype == compute
    assert _dtypes(inter["intermediates"]) == {compute}
    assert loss.dtype == F32 and np.isfinite(float(loss))
    assert _dtypes(g) == {grad}


@pytest.fixture(scope="module")
def mlp_steps():
    """One jitted train step per policy, with 2 micro-batches (accumulation) and an L2 penalty."""
    out = {}
    for policy in PRECISIONS:
        p = Precision(policy)
        model = make_model("mlp", num_outputs=3, hidden=(8,), norm="batch", precision=p)
        tx = precision_optimizer(jopt.adam(1e-2), p)
        step = make_train_step(model, tx, LossSpec(num_classes=3, l2=1e-3))
        out[policy] = (model, tx, jax.jit(under_matmul_precision(step, p)))
    return out


@pytest.mark.parametrize("policy", PRECISIONS)
def test_train_step_keeps_dtypes_with_accumulation(policy, mlp_steps):
    model, tx, step = mlp_steps[policy]
    param = EXPECT[policy][0]
    rng = np.random.default_rng(1)
    xb = jnp.asarray(rng.normal(size=(2, 5, 16)), jnp.float32)
    yb = jnp.asarray(rng.integers(0, 3, size=(2, 5)), jnp.int32)
    wb = jnp.ones((2, 5), jnp.float32)
    state = init_train_state(model, tx, xb[0, :1], jax.random.key(0))
    for i in range(3):
        state, m = step(state, xb, yb, wb, jax.random.key(i))
    assert _dtypes(state.params) == {param}
    assert _float_state_dtypes(state.opt_state) == {F32}
    assert _dtypes(state.model_state) == {F32}
    # numeric step metrics are float32; the non-finite guard's flag is a bool
    assert all(v.dtype in (F32, jnp.bool_) for v in m.values())
    assert m["loss"].dtype == F32
    assert np.isfinite(float(m["loss"]))
    ev = jax.jit(make_eval_fn(model, LossSpec(num_classes=3)))(
        state.params, state.model_state, xb[0], yb[0]
    )
    assert {k: v.dtype for k, v in ev.items()} == {"loss": F32, "accuracy": F32}


def test_accumulation_sums_micro_batch_gradients_in_float32():
    """bf16_mixed: each micro-batch's gradient is float32 (computed through bf16 activations),
    and k=2 micro-batches give exactly the float32 sum of the two (SGD, no dropout/batch norm)."""
    p = Precision("bf16_mixed")
    model = make_model("mlp", num_outputs=3, hidden=(8,), precision=p)
    tx = jopt.sgd(0.5)
    step = jax.jit(make_train_step(model, tx, LossSpec(num_classes=3)))
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 4, 16)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=(2, 4)), jnp.int32)
    state = init_train_state(model, tx, x[0, :1], jax.random.key(0))
    two, _ = step(state, x, y, jnp.ones((2, 4), jnp.float32), jax.random.key(1))

    @jax.jit
    def half_grad(prm, xh, yh):
        def objective(q):
            logits, _ = apply_model(model, q, {}, xh, train=True)
            return jnp.sum(cross_entropy(logits, one_hot_targets(yh, 3)))

        return jax.grad(objective)(prm)

    g1, g2 = half_grad(state.params, x[0], y[0]), half_grad(state.params, x[1], y[1])
    assert _dtypes(g1) == {F32}
    want = jax.tree.map(lambda w, a, b: w - 0.5 * ((a + b) / 8.0), state.params, g1, g2)
    for a, b in zip(jax.tree.leaves(two.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


class _NoDtypeModule(nn.Module):
    """A user module with no dtype fields: the policy reaches it through CastModel."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        w = self.param("w", nn.initializers.lecun_normal(), (x.shape[-1], 3))
        return x @ w


@pytest.mark.parametrize("policy", PRECISIONS)
def test_user_modules_follow_the_policy(policy):
    p = Precision(policy)
    param, compute, grad = EXPECT[policy]
    # With dtype/param_dtype fields: cloned with the policy's values.
    dense = model_with_precision(nn.Dense(3), p)
    assert (dense.dtype, dense.param_dtype) == (compute, param)
    # Without: wrapped (float32: unchanged), parameters stored in param_dtype, read in compute.
    model = make_model(_NoDtypeModule(), num_outputs=3, precision=p)
    assert isinstance(model, CastModel) == (policy != "float32")
    x = jnp.ones((4, 5), jnp.float32)
    state = init_train_state(model, jopt.adam(1e-3), x[:1], jax.random.key(0))
    assert _dtypes(state.params) == {param}
    out, _ = apply_model(model, state.params, {}, x, train=False)
    assert out.dtype == compute
    g = jax.grad(lambda prm: jnp.sum(apply_model(model, prm, {}, x, train=False)[0]))(state.params)
    assert _dtypes(g) == {grad}


# --- hand-written models on dict and tuple trees ---------------------------------------------


def _linear_problem(tree: str):
    """A hand-written linear classifier on a ``(w, b)`` tuple or a ``{"w", "b"}`` dict; the
    logits' dtype is recorded at trace time (the activation)."""
    seen: list = []

    def loss_fn(params, x, y):
        w, b = params if isinstance(params, tuple) else (params["w"], params["b"])
        logits = x @ w + b
        seen.append(jnp.dtype(logits.dtype))
        return jnp.mean(cross_entropy(logits, one_hot_targets(y, 3)))

    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.normal(size=(5, 3)) * 0.1, jnp.float32)
    b = jnp.zeros((3,), jnp.float32)
    params = (w, b) if tree == "tuple" else {"w": w, "b": b}
    x = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=8), jnp.int32)
    return loss_fn, params, x, y, seen


def _plain_step(loss_fn, tx):
    def step(carry, x, y):
        params, opt = carry
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        u, opt = tx.update(g, opt, params, value=loss)
        return (jopt.apply_updates(params, u), opt), (loss, g)

    return jax.jit(step)


POLICIES = [Precision(n) for n in PRECISIONS] + [Precision("bf16", state_dtype="bfloat16")]
POLICY_IDS = [*PRECISIONS, "bf16-state_bf16"]


@pytest.mark.parametrize("tree", ["dict", "tuple"])
@pytest.mark.parametrize("p", POLICIES, ids=POLICY_IDS)
def test_dtypes_on_dict_and_tuple_trees(p, tree):
    param, compute, grad = EXPECT[p.policy]
    state_dt = F32 if p.state_dtype is None else p.state_dtype
    loss0, params0, x, y, seen = _linear_problem(tree)
    loss_fn, params, tx = apply_precision(loss0, params0, jopt.adam(1e-2), p)
    assert type(params) is type(params0) and _dtypes(params) == {param}
    opt = tx.init(params)
    assert _float_state_dtypes(opt) == {state_dt}
    step = _plain_step(loss_fn, tx)
    carry = (params, opt)
    for _ in range(3):
        carry, (loss, g) = step(carry, x, y)
    assert seen and set(seen) == {compute}  # activations
    assert loss.dtype == F32
    assert _dtypes(g) == {grad}
    assert _dtypes(carry[0]) == {param} and type(carry[0]) is type(params0)
    assert _float_state_dtypes(carry[1]) == {state_dt}


def test_matmul_precision_is_recorded_forward_and_backward():
    loss0, params, x, y, _ = _linear_problem("tuple")

    def precisions(p):
        jaxpr = jax.make_jaxpr(jax.grad(precision_loss(loss0, p)))(params, x, y)
        eqns = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
        assert len(eqns) >= 2  # forward and backward
        return {str(e.params["precision"]) for e in eqns}

    assert precisions(Precision("float32")) == {str((jax.lax.Precision.HIGHEST,) * 2)}
    assert precisions(Precision("float32", "high")) == {str((jax.lax.Precision.HIGH,) * 2)}
    assert precisions(Precision("float32", "default")) == {str((jax.lax.Precision.DEFAULT,) * 2)}


def test_precision_loss_cast_batch_positions_and_aux():
    def loss_fn(params, x, t):
        pred = x @ params["w"]
        return jnp.mean((pred.astype(jnp.float32) - t) ** 2), {"pred": pred, "t_dtype": t}

    p = Precision("bf16_mixed")
    params = {"w": jnp.ones((2, 1), jnp.float32)}
    x, t = jnp.ones((3, 2), jnp.float32), jnp.ones((3, 1), jnp.float32)
    loss, aux = precision_loss(loss_fn, p, has_aux=True, cast_batch=(0,))(params, x, t)
    assert loss.dtype == F32 and aux["pred"].dtype == F32  # metrics come back in float32
    with pytest.raises(jax.dtypes.TypePromotionError):  # a bf16 target meets float32 maths
        precision_loss(loss_fn, p, has_aux=True, cast_batch=True)(params, x, t)


# --- combinations: packed execution, groups, accumulation, skip-nonfinite --------------------


def _groups_tx():
    base = jopt.with_hparams(jopt.adam)(1e-2)
    return jopt.groups([("bias", "1|b", {"lr_mult": 0.1})], default=base)


COMBOS = {
    "adam": lambda: jopt.adam(1e-2),
    "groups": _groups_tx,
    "accumulate": lambda: jopt.accumulate(jopt.adam(1e-2), 2),
    "skip_nonfinite": lambda: jopt.skip_nonfinite(jopt.adam(1e-2)),
}


PACKED_CASES = [(p, c) for p in POLICIES[1:3] for c in COMBOS] + [
    (POLICIES[0], "adam"),
    (POLICIES[3], "groups"),
]


@pytest.mark.parametrize(
    "p,combo", PACKED_CASES, ids=[f"{p.policy}-{p.state_dtype}-{c}" for p, c in PACKED_CASES]
)
def test_packed_equals_per_leaf_under_each_policy(p, combo):
    """Packed execution under a policy: same dtypes, and the trajectory of the per-leaf step."""
    param, _, _ = EXPECT[p.policy]
    loss0, params0, x, y, _ = _linear_problem("tuple")
    loss_fn, params, tx = apply_precision(loss0, params0, COMBOS[combo](), p)
    pstate, pstep, unpack = packed_train_step(loss_fn, params, tx)
    pstep = jax.jit(under_matmul_precision(pstep, p))
    plain = _plain_step(loss_fn, tx)
    carry = (params, tx.init(params))
    xs = [x, x * 0.5, x.at[0, 0].set(jnp.nan), x * 2.0]  # one non-finite batch
    for xb in xs:
        pstate, ploss = pstep(pstate, xb, y)
        carry, _ = plain(carry, xb, y)
        assert ploss.dtype == F32
    got = unpack(pstate)
    assert type(got) is tuple and _dtypes(got) == {param}
    want_state = _float_state_dtypes(carry[1])
    assert _float_state_dtypes(unpack.opt_state(pstate)) == want_state
    if p.state_dtype is not None:
        assert p.state_dtype in want_state  # moments; groups keep float32 hyperparameters
    finite = all(np.all(np.isfinite(np.asarray(a, np.float32))) for a in got)
    assert finite == (combo == "skip_nonfinite")
    for a, b in zip(got, carry[0], strict=True):
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(b, np.float32), atol=1e-6, equal_nan=True
        )


def test_bf16_accumulator_is_float32_by_default():
    _, params, _, _, _ = _linear_problem("tuple")
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    state = jopt.accumulate(jopt.sgd(0.1), 2).init(params)
    assert _float_state_dtypes(state) == {F32}


# --- accuracy: bf16_mixed against float32, at small scale ------------------------------------


def _fit_accuracy(model_name, opts, data, policy, *, epochs, lr, batch):
    p = Precision(policy)
    model = make_model(model_name, num_outputs=data.num_classes, precision=p, **opts)
    with jax.default_matmul_precision(p.matmul):
        r = fit(
            model,
            precision_optimizer(jopt.adam(lr), p),
            data,
            epochs=epochs,
            key=0,
            batching=Batching("minibatch", batch),
            eval_splits=("test",),
        )
    return 100.0 * r.history[-1]["test_accuracy"]


@pytest.mark.slow
def test_bf16_mixed_matches_float32_accuracy_on_digits():
    data = load_dataset("digits", test_fraction=0.25)
    acc = {
        pol: _fit_accuracy("mlp", {"hidden": (64,)}, data, pol, epochs=6, lr=3e-3, batch=64)
        for pol in ("float32", "bf16_mixed")
    }
    assert acc["float32"] > 93.0, acc
    assert abs(acc["bf16_mixed"] - acc["float32"]) <= 0.5 + 1e-9, acc


@pytest.mark.slow
def test_bf16_mixed_matches_float32_accuracy_on_mnist1d_cnn():
    data = load_dataset("mnist1d")
    opts = {"channels": (16, 16), "kernel_size": 5, "dense": 0}
    acc = {
        pol: _fit_accuracy("cnn", opts, data, pol, epochs=6, lr=1e-2, batch=100)
        for pol in ("float32", "bf16_mixed")
    }
    assert acc["float32"] > 60.0, acc
    assert abs(acc["bf16_mixed"] - acc["float32"]) <= 1.0 + 1e-9, acc
