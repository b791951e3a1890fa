"""flax NNX and equinox models in the runner (``jopt.models.adapt``), each with batch norm and
dropout, on a tiny in-memory data set (96 training examples, 6 steps an epoch), through the
runner's own programs (``build_program``/``init_group``: a single run per leaf, a vmapped
group of two seeds packed).

For each library:

- one epoch of a single run equals a hand-written loop in the library's own idiom
  (``nnx.Optimizer`` + ``nnx.value_and_grad``; ``eqx.partition`` + ``jax.vmap(...,
  axis_name="batch")`` + optax) with the same keys, to 1e-6 (loss, parameters, state);
- member 0 of a packed K=2 seed group equals that single run (1e-6): packed == per leaf,
  and the group's vmapped init builds each seed's own module;
- the model state (batch statistics; NNX's ``nnx.Rngs`` counters) changes in training and
  not in evaluation, and evaluation uses the running statistics (no dropout, per example);
- a checkpoint (the runner's tree, through orbax) restores bit for bit and the continued
  epoch equals the uninterrupted one bit for bit; ``load_module`` gives back the library's
  own module type, computing the same outputs.

A linen module's adapter is the runner's own linen path, bit for bit.

What cannot be exact is refused in one line (equinox ``BatchNorm`` without
``axis_name="batch"``, a built module instead of a class/factory, a bfloat16 precision,
data-parallel runs).
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jopt import JoptError
from jopt.data import Dataset
from jopt.distributed import restore_checkpoint, save_checkpoint
from jopt.experiment import config_from_dict, setup
from jopt.experiment._checks import check_framework
from jopt.experiment._program import build_program, init_group
from jopt.models import EquinoxAdapter, NNXAdapter, adapt, make_model

LR = 3e-3
SEED = 3
SEEDS = (SEED, SEED + 2)  # a sweep group of two members
TOL = 1e-6
# compiling is most of the cost; every comparison is between programs compiled alike, or to 1e-6
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


class NNet(nnx.Module):
    def __init__(self, din=5, dout=3, *, rngs):
        # no bias before batch norm: its gradient is rounding noise, which Adam would amplify
        self.l1 = nnx.Linear(din, 8, use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.l2 = nnx.Linear(8, dout, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(nnx.relu(self.bn(self.l1(x)))))


class ENet(eqx.Module):
    l1: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    drop: eqx.nn.Dropout
    l2: eqx.nn.Linear

    def __init__(self, din=5, dout=3, *, key, axis_name="batch"):
        k1, k2 = jax.random.split(key)
        self.l1 = eqx.nn.Linear(din, 8, use_bias=False, key=k1)  # (as NNet)
        self.bn = eqx.nn.BatchNorm(8, axis_name=axis_name, mode="batch")
        self.drop = eqx.nn.Dropout(0.3)
        self.l2 = eqx.nn.Linear(8, dout, key=k2)

    def __call__(self, x, state, *, key=None):
        h, state = self.bn(jax.nn.relu(self.l1(x)), state)
        return self.l2(self.drop(h, key=key)), state


MODELS = {"nnx": NNet, "equinox": ENet}

CFG = {
    "name": "frameworks",
    "seed": SEED,
    "data": {"name": "iris"},  # replaced by DATA below (setup(config, data=...))
    "model": {"name": "linear"},  # replaced by the adapted model
    "optimizer": {"name": "adam", "learning_rate": LR},
    "batching": {"strategy": "minibatch", "batch_size": 16},
    "train": {"epochs": 2},
    "output": {"progress": False, "plots": False},
}


def _data() -> Dataset:
    r = np.random.default_rng(0)
    x = r.normal(size=(120, 5)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)).astype(np.int32)
    return Dataset(x[:96], y[:96], x[96:], y[96:], x[:0], y[:0], "classification", 3, (5,))


DATA = _data()


def _cfg(*over, seed=SEED):
    return config_from_dict(CFG, [f"seed={seed}", *over])


def _setup(fw, *over):
    s = setup(_cfg(*over), data=DATA)
    return dataclasses.replace(s, model=make_model(MODELS[fw], num_outputs=3))


class Run:
    """One framework's runner program as ``jopt sweep`` builds it for a group of two seeds
    (vmapped, packed), compiled once, and the group's first two epochs."""

    def __init__(self, fw):
        self.fw = fw
        self.x, self.y = jnp.asarray(DATA.x_train), jnp.asarray(DATA.y_train)
        self.setup = _setup(fw)
        self.program = build_program(_cfg(), self.setup, len(SEEDS))
        self.execution = self.program.execution
        self.s0, _ = init_group(self.program, [_cfg(seed=s) for s in SEEDS], self.x[:1])
        self.epoch = (
            jax.jit(self.program.epoch_fn, compiler_options=FAST_COMPILE)
            .lower(self.s0, self.x, self.y)
            .compile()
        )
        self.s1, self.m1 = self.epoch(self.s0, self.x, self.y)
        self.s2, self.m2 = self.epoch(self.s1, self.x, self.y)


def _one(tree, k=0):
    """Member ``k`` of a group's state or metrics (stacked on a leading axis, K = 1 too)."""
    return jax.tree.map(lambda a: a[k], tree)


@pytest.fixture(scope="module", params=["nnx", "equinox"])
def run(request):
    return Run(request.param)


def _leaves(tree):
    return [
        np.asarray(
            jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a
        )
        for a in jax.tree.leaves(tree)
    ]


def _close(a, b, tol=TOL):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=0, atol=tol)


def _equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


def _plan(run, seed):
    """The runner's keys for a member's first epoch: its init key, the permutation and each
    step's dropout key (``init_train_state``, ``make_train_epoch``, ``make_train_step``)."""
    k_init, _, k_train = jax.random.split(jax.random.key(seed), 3)
    _, k_perm, k_steps = jax.random.split(k_train, 3)
    idx, w = run.setup.batching.plan(k_perm, len(DATA.y_train))
    assert idx.shape[1] == 1 and bool(jnp.all(w == 1))  # 6 full batches, no accumulation
    drops = []
    for i in range(idx.shape[0]):
        step_key = jax.random.split(jax.random.fold_in(k_steps, i), 1)[0]
        drops.append(jax.random.split(step_key)[1])  # (augmentation, dropout)
    return k_init, idx[:, 0], drops


def _nnx_reference(run):
    """NNX's own training loop, per seed (its functional form, ``nnx.split``/``nnx.merge`` in
    ``jax.jit``): the module's nnx.Rngs streams drive dropout."""

    @functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
    def step(graphdef, state, xb, yb):
        model, opt = nnx.merge(graphdef, state)

        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return nnx.state((model, opt)), loss

    out = []
    for seed in SEEDS:
        k_init, idx, _ = _plan(run, seed)
        model = NNet(rngs=nnx.Rngs(k_init))
        model.train()
        graphdef, state = nnx.split((model, nnx.Optimizer(model, optax.adam(LR), wrt=nnx.Param)))
        losses = []
        for i in idx:
            state, loss = step(graphdef, state, run.x[i], run.y[i])
            losses.append(float(loss))
        model, _ = nnx.merge(graphdef, state)
        _, params, rest = nnx.split(model, nnx.Param, ...)
        out.append((np.mean(losses), nnx.to_pure_dict(params), nnx.to_pure_dict(rest)))
    return out


def _eqx_reference(run):
    """equinox's own loop, per seed: partition, vmap over examples with axis_name, optax."""
    tx = optax.adam(LR)
    static = eqx.partition(
        eqx.nn.make_with_state(ENet)(key=jax.random.key(0))[0], eqx.is_inexact_array
    )[1]

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def step(params, state, opt_state, xb, yb, key):
        def loss_fn(params):
            m = eqx.combine(params, static)
            keys = jax.random.split(key, xb.shape[0])
            out, st = jax.vmap(
                lambda x, s, k: m(x, s, key=k),
                axis_name="batch",
                in_axes=(0, None, 0),
                out_axes=(0, None),
            )(xb, state, keys)
            return optax.softmax_cross_entropy_with_integer_labels(out, yb).mean(), st

        (loss, state), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss

    out = []
    for seed in SEEDS:
        k_init, idx, drops = _plan(run, seed)
        model, state = eqx.nn.make_with_state(ENet)(key=k_init)
        params = eqx.partition(model, eqx.is_inexact_array)[0]
        opt_state = tx.init(params)
        losses = []
        for i, k in zip(idx, drops, strict=True):
            params, state, opt_state, loss = step(params, state, opt_state, run.x[i], run.y[i], k)
            losses.append(float(loss))
        out.append((np.mean(losses), params, state))
    return out


def test_each_member_equals_the_library_idiom_loop_of_its_seed(run):
    assert run.execution == "packed"
    with jax.numpy_dtype_promotion("standard"):  # optax / the libraries under strict tests
        refs = _nnx_reference(run) if run.fw == "nnx" else _eqx_reference(run)
    for k, (loss, params, model_state) in enumerate(refs):
        assert abs(float(run.m1["train_loss"][k]) - loss) <= TOL
        _close(_one(run.s1.params, k), params)
        _close(_one(run.s1.model_state, k), model_state)
    # each seed built its own module: other parameters, other dropout
    assert abs(refs[0][0] - refs[1][0]) > 1e-3
    other, first = _leaves(_one(run.s0.params, 1)), _leaves(_one(run.s0.params, 0))
    assert all(not np.allclose(a, b) for a, b in zip(other, first, strict=True) if a.ndim == 2)


def test_model_state_moves_in_training_not_in_evaluation(run):
    adapter = run.setup.model
    before, after = _leaves(run.s0.model_state), _leaves(run.s1.model_state)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    xv = jnp.asarray(DATA.x_val)
    p, ms = _one(run.s1.params), _one(run.s1.model_state)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def forward(p, ms, xv):
        out1, ms1 = adapter.apply(p, ms, xv, train=False, key=jax.random.key(1))
        out2, ms2 = adapter.apply(p, ms, xv, train=False, key=jax.random.key(2))
        one, _ = adapter.apply(p, ms, xv[:1], train=False)
        tr, ms3 = adapter.apply(p, ms, xv, train=True, key=jax.random.key(1))
        return out1, out2, one, tr, ms1, ms2, ms3

    out1, out2, one, tr, ms1, ms2, ms3 = forward(p, ms, xv)
    _equal(ms1, ms)
    _equal(ms2, ms)
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(out2))  # no dropout
    # running statistics: an example's output does not depend on the rest of the batch
    np.testing.assert_allclose(np.asarray(one[0]), np.asarray(out1[0]), rtol=0, atol=1e-6)
    assert not np.allclose(np.asarray(tr), np.asarray(out1))  # batch statistics, dropout
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(ms3), _leaves(ms), strict=True))
    # the runner's evaluation is the eval-mode forward pass
    ev = jax.jit(run.program.eval_fn, compiler_options=FAST_COMPILE)(
        run.s1.params, run.s1.model_state, xv, jnp.asarray(DATA.y_val)
    )
    with jax.numpy_dtype_promotion("standard"):
        ce = optax.softmax_cross_entropy_with_integer_labels(out1, jnp.asarray(DATA.y_val))
    assert abs(float(ev["loss"][0]) - float(ce.mean())) <= TOL


def test_checkpoint_resume_is_bit_exact_and_restores_the_module_type(run, tmp_path):
    from jopt.experiment import load_module

    one = _one(run.s1)  # the runner checkpoints each member: its state and its best variables
    tree = {"state": one, "best": (one.params, one.model_state)}
    path = save_checkpoint(tmp_path / "checkpoints" / "epoch_000001", tree)
    restored = restore_checkpoint(path, jax.eval_shape(lambda: tree))
    _equal(restored, tree)
    group = jax.tree.map(lambda a, b: jnp.stack([a, b[1]]), restored["state"], run.s1)
    s2, m2 = run.epoch(group, run.x, run.y)
    _equal(s2, run.s2)
    np.testing.assert_array_equal(np.asarray(m2["train_loss"]), np.asarray(run.m2["train_loss"]))
    params, model_state = _one(run.s1.params), _one(run.s1.model_state)
    module = load_module(tmp_path, run.setup.model)
    if run.fw == "equinox":  # stateful: (module, eqx.nn.State), as eqx.nn.make_with_state
        module, state = module
        _equal(state, model_state)
    assert type(module) is MODELS[run.fw]
    xv = jnp.asarray(DATA.x_val)
    want, _ = run.setup.model.apply(params, model_state, xv, train=False)
    if run.fw == "nnx":
        module.eval()
        got = module(xv)
        _close(nnx.to_pure_dict(nnx.state(module, nnx.BatchStat)), {"bn": model_state["bn"]}, 0)
    else:
        m = eqx.nn.inference_mode(module)
        with jax.numpy_dtype_promotion("standard"):
            got, _ = jax.vmap(m, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(
                xv, state
            )
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_sharpness_reads_the_model_through_its_adapter(run):
    from jopt.experiment._sharpness import sharpness_fn

    fn = sharpness_fn(_cfg("diagnostics.sharpness_iters=2"), run.setup)
    lam = float(fn(_one(run.s1.params), _one(run.s1.model_state), jax.random.key(0)))
    assert np.isfinite(lam) and lam > 0


def test_a_linen_module_adapts_to_what_the_runner_computes(tmp_path):
    """``adapt(linen module)`` is the runner's own linen path (``init_train_state``,
    ``apply_model``), and ``load_module`` gives the module back bound to its variables."""
    import flax.linen as nn

    from jopt.experiment import load_module
    from jopt.optimizers import sgd
    from jopt.train import apply_model, init_train_state

    class Small(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.BatchNorm(use_running_average=not train)(nn.Dense(4, use_bias=False)(x))
            return nn.Dropout(0.5, deterministic=not train)(x)

    model, adapter, x = Small(), adapt(Small()), jnp.asarray(DATA.x_train[:8])
    k_init, k_drop, _ = jax.random.split(jax.random.key(0), 3)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def both(key):
        st = init_train_state(model, sgd(0.1), x[:1], jax.random.key(0))
        mine = adapter.init(k_init, x[:1], dropout_key=k_drop)
        ref = apply_model(model, st.params, st.model_state, x, train=True, key=key)
        got = adapter.apply(*mine, x, train=True, key=key)
        return (st.params, st.model_state), mine, ref, got

    theirs, mine, ref, got = both(jax.random.key(1))
    _equal(mine, theirs)
    _equal(got, ref)
    one = {"params": mine[0], "model_state": got[1]}
    save_checkpoint(tmp_path / "checkpoints" / "epoch_000001", {"state": one, "best": mine})
    bound = load_module(tmp_path, model, sample=x[:1])
    assert type(bound) is Small
    _equal(dict(bound.variables), {"params": mine[0], **got[1]})
    with pytest.raises(JoptError, match="needs sample="):
        load_module(tmp_path, model)


# -- refusals (nothing compiles) ---------------------------------------------------------------


def test_equinox_batch_norm_needs_the_batch_axis_name():
    def bad(key):
        return ENet(key=key, axis_name="examples")

    with pytest.raises(JoptError, match="axis_name='batch'") as e:
        adapt(bad, framework="equinox").check(jnp.zeros((2, 5)))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("built", ["nnx", "equinox"])
def test_a_built_module_is_refused(built):
    if built == "nnx":  # abstract builds (nothing computed): instances all the same
        module = nnx.eval_shape(lambda: NNet(rngs=nnx.Rngs(0)))
    else:
        module = eqx.filter_eval_shape(ENet, key=jax.random.key(0))
    with pytest.raises(JoptError, match="each seed builds its own"):
        adapt(module)


def test_what_cannot_be_exact_is_refused():
    with pytest.raises(JoptError, match="precision bf16 applies to flax linen"):
        make_model(NNet, num_outputs=3, precision="bf16")
    with pytest.raises(JoptError, match="returned an array, not an equinox module"):
        adapt(lambda key: jnp.zeros(3)).check(jnp.zeros((2, 5)))
    with pytest.raises(JoptError, match="distributed runs train flax linen models"):
        check_framework(_cfg("distributed.data=2"), adapt(NNet))
    a = adapt(ENet)
    assert isinstance(a, EquinoxAdapter) and isinstance(adapt(NNet), NNXAdapter)
    assert adapt(a) is a
