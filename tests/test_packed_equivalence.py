"""Results do not depend on the layout: packed and per-leaf training give the same trajectories.

For every optimizer in the registry and for every combinator (groups with overrides, lr_mult
and freeze; weight-decay, L1 and L2 masks; clipping; accumulation; skip-nonfinite; EMA;
lookahead; norms), three runs of ``STEPS`` steps on the same model and batches are compared:

- per leaf: ``jax.grad`` on the tree, ``tx.update``, ``apply_updates``;
- packed: :func:`jopt.fused.packed_train_step` (parameters, gradients and state packed);
- tree-form: ``jopt.fuse(tx, pad_to=8)`` on the tree (state packed and zero-padded).

All three run in one jitted ``lax.scan`` per case (one compile per case, so 100 steps cost no
more compile time than 1). The loss curves and the final parameters must agree to ``TOL``
(max abs difference relative to the largest magnitude, float32).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from registry import REGISTRY, resolve

import jopt
from jopt.fused import packed_train_step

TOL = 1e-6
STEPS = 100


def _params():
    k = jax.random.split(jax.random.key(0), 4)
    return {
        "enc": {"kernel": jax.random.normal(k[0], (4, 3)) * 0.5, "bias": jnp.zeros(3)},
        "head": (jax.random.normal(k[1], (3, 2)) * 0.5, jnp.full((2,), 0.1)),
        "scale": jnp.float32(1.0),
    }


def _loss(p, x, y):
    h = jnp.tanh(x @ p["enc"]["kernel"] + p["enc"]["bias"]) * p["scale"]
    w, b = p["head"]
    return jnp.mean(jnp.square(h @ w + b - y))


def _batches(nan_at=()):
    kx, ky = jax.random.split(jax.random.key(1))
    xs = jax.random.normal(kx, (STEPS, 8, 4))
    ys = jax.random.normal(ky, (STEPS, 8, 2))
    for i in nan_at:
        xs = xs.at[i, 0, 0].set(jnp.nan)
    return xs, ys


def _trajectories(tx, batches, params=None):
    """(losses, final params) for per-leaf, packed and tree-form fused runs of ``tx``."""
    params = _params() if params is None else params
    state0, step, unpack = packed_train_step(_loss, params, tx)
    fused = jopt.fuse(tx, pad_to=8)

    @jax.jit
    def run(params, state0, xs, ys):
        def body(carry, batch):
            (p, s), packed, (fp, fs) = carry
            loss, g = jax.value_and_grad(_loss)(p, *batch)
            u, s = tx.update(g, s, p)
            packed, packed_loss = step(packed, *batch)
            floss, fg = jax.value_and_grad(_loss)(fp, *batch)
            fu, fs = fused.update(fg, fs, fp)
            carry = ((jopt.apply_updates(p, u), s), packed, (jopt.apply_updates(fp, fu), fs))
            return carry, (loss, packed_loss, floss)

        init = ((params, tx.init(params)), state0, (params, fused.init(params)))
        (tree, packed, fused_end), losses = jax.lax.scan(body, init, (xs, ys))
        return losses, tree, packed, fused_end

    losses, tree, packed, fused_end = run(params, state0, *batches)
    return losses, tree, packed, fused_end, unpack


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return np.inf  # non-finite at different places
    a, b = a[np.isfinite(b)], b[np.isfinite(b)]
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def _check(tx, batches=None, params=None, tol=TOL):
    batches = _batches() if batches is None else batches
    losses, (p_ref, s_ref), packed, (p_fused, _), unpack = _trajectories(tx, batches, params)
    ref_loss, packed_loss, fused_loss = losses
    assert np.all(np.isfinite(np.asarray(ref_loss)[np.isfinite(np.asarray(packed_loss))]))
    assert _rel(packed_loss, ref_loss) <= tol, "packed loss curve differs"
    assert _rel(fused_loss, ref_loss) <= tol, "fuse loss curve differs"
    got = unpack(packed)
    assert jax.tree.structure(got) == jax.tree.structure(p_ref)
    trees = (jax.tree.leaves(got), jax.tree.leaves(p_ref), jax.tree.leaves(p_fused))
    for a, b, c in zip(*trees, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert _rel(a, b) <= tol and _rel(c, b) <= tol
    # Names are stated per parameter path, never per buffer.
    s_packed = unpack.opt_state(packed)
    assert sorted(jopt.get_hparams(s_packed)) == sorted(jopt.get_hparams(s_ref))
    assert sorted(jopt.metrics(packed.opt_state)) == sorted(jopt.metrics(s_ref))
    for k, v in jopt.metrics(s_ref).items():
        assert _rel(jopt.metrics(packed.opt_state)[k], v) <= 1e-5, k
    return unpack, packed, s_ref


def _registry_kwargs(case):
    return resolve(case.parity[0], "jopt") if case.parity else dict(case.quadratic[0])


# Learning-rate-free methods set their step size from global sums over the whole history
# (D-adaptation's <g, x0 - x> and its norms). One buffer sums in another order than leaf by leaf,
# and 100 steps of that feedback amplify float32 rounding (1e-7) to ~2e-6: same maths, looser
# tolerance.
GLOBAL_SUM_TOL = {"dadapt_adamw": 1e-5, "prodigy": 1e-5, "mechanize(adam)": 1e-5}

# Optimizers that must be refused: state shaped per leaf (factored / per-axis / one scalar per
# leaf) or noise drawn per leaf. Guards the refusal itself (the registry may hold more).
MUST_REFUSE = {"adafactor", "sm3", "novograd", "noisy_sgd"}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registry_optimizer_is_exact_packed_or_refused(name):
    case = REGISTRY[name]
    make = functools.partial(case.factory, **_registry_kwargs(case))
    try:
        jopt.fused.packed_layout(make(), _params())
    except jopt.JoptError as e:
        # Refused: one line, and the same refusal from every packed entry point.
        assert "\n" not in str(e) and "packed execution" in str(e)
        with pytest.raises(jopt.JoptError, match="packed execution"):
            packed_train_step(_loss, _params(), make())
        with pytest.raises(jopt.JoptError, match="packed execution"):
            jopt.fuse(make()).init(_params())
        return
    assert name not in MUST_REFUSE, f"{name} should be refused packed"
    _check(make(), tol=GLOBAL_SUM_TOL.get(name, TOL))


def test_refusals_cover_the_shape_dependent_optimizers_and_per_leaf_fixes_them():
    assert set(REGISTRY) >= MUST_REFUSE
    assert len(set(REGISTRY) - MUST_REFUSE) >= 20
    # per_leaf(...) runs the shape-dependent part on the real leaves: then exact again.
    _check(jopt.fused.per_leaf(jopt.adafactor(1e-2)))


def _adamw_hp(**kw):
    return jopt.with_hparams(jopt.adamw)(1e-2, **kw)


def _ndim_mask(p):
    return jax.tree.map(lambda x: x.ndim > 1, p)


COMBOS = {
    "groups-overrides-lr_mult-freeze": lambda: jopt.groups(
        [
            ("no_decay", "*/bias|head/1", {"weight_decay": 0.0}),
            ("enc", "enc/kernel", {"lr_mult": 0.1}),
            ("frozen", "head/0", "freeze"),
        ],
        default=_adamw_hp(weight_decay=0.1),
    ),
    "groups-other-optimizer": lambda: jopt.groups(
        [("enc", "enc/**", jopt.sgd(0.05, momentum=0.9))], default=jopt.lamb(1e-2)
    ),
    "adamw-callable-mask": lambda: jopt.adamw(1e-2, weight_decay=0.1, mask=_ndim_mask),
    "adamw-tree-mask": lambda: jopt.adamw(
        1e-2, weight_decay=0.1, mask={"enc": True, "head": (True, False), "scale": False}
    ),
    "l1-l2-masks": lambda: jopt.chain(
        jopt.add_l2(0.05, mask=_ndim_mask),
        jopt.add_l1(
            0.01, mask={"enc": {"kernel": False, "bias": True}, "head": True, "scale": False}
        ),
        jopt.sgd(0.05, momentum=0.9),
    ),
    "l1-proximal-mask": lambda: jopt.chain(
        jopt.adam(1e-2), jopt.l1_proximal(0.1, 1e-2, mask=_ndim_mask)
    ),
    "lamb-mask": lambda: jopt.lamb(1e-2, weight_decay=0.1, mask=_ndim_mask),
    "clip-global-norm": lambda: jopt.chain(jopt.clip_by_global_norm(0.05), jopt.adam(1e-2)),
    "clip-value": lambda: jopt.chain(jopt.clip(0.01), jopt.sgd(0.1)),
    "accumulate": lambda: jopt.accumulate(jopt.adam(1e-2), 3),
    "ema": lambda: jopt.with_param_ema(jopt.adam(1e-2), decay=0.9),
    "lookahead": lambda: jopt.with_lookahead(jopt.adam(1e-2), sync_period=4),
    "norms-over-frozen-group": lambda: jopt.with_norms(
        jopt.groups([("frozen", "enc/**", "freeze")], default=jopt.adam(1e-2))
    ),
    "optax-adamw-inside": lambda: jopt.chain(jopt.tap("g"), optax.adam(1e-2)),
}


@pytest.mark.parametrize("name", sorted(COMBOS))
def test_combinators_are_layout_independent(name):
    with jax.numpy_dtype_promotion("standard" if "optax" in name else "strict"):
        _check(COMBOS[name]())


def test_skip_nonfinite_skips_the_same_steps():
    tx = jopt.skip_nonfinite(jopt.adam(1e-2), max_consecutive=3)
    _, packed, s_ref = _check(tx, _batches(nan_at=(3, 10, 11)))
    assert int(jopt.metrics(s_ref)["skip/total"]) == 3
    assert int(jopt.metrics(packed.opt_state)["skip/total"]) == 3


def test_frozen_leaves_get_no_gradient_and_no_state():
    tx = COMBOS["groups-overrides-lr_mult-freeze"]()
    params = _params()
    state, step, unpack = packed_train_step(_loss, params, tx)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    frozen = unpack.layout.slots[paths.index("['head'][0]")].group
    # The frozen leaf has its own buffer, whose gradient the optimizer never reads.
    assert unpack.no_grad == {frozen}
    assert sum(s.group == frozen for s in unpack.layout.slots) == 1
    # No state for it: no packed slot holds the frozen buffer.
    slots = [
        k
        for path, _ in jax.tree_util.tree_flatten_with_path(state.opt_state.inner)[0]
        for k in path
        if isinstance(k, jax.tree_util.DictKey)
    ]
    assert frozen not in {k.key for k in slots}
    xs, ys = _batches()
    new, _ = jax.jit(step)(state, xs[0], ys[0])
    np.testing.assert_array_equal(np.asarray(new.params[frozen]), np.asarray(state.params[frozen]))
    # A global reader outside the groups needs the frozen gradient: it is taken then.
    _, _, unpack2 = packed_train_step(_loss, params, COMBOS["norms-over-frozen-group"]())
    assert unpack2.no_grad == frozenset()


def test_buffers_are_split_by_class():
    params = _params()
    layout = jopt.fused.packed_layout(jopt.adamw(1e-2, mask=_ndim_mask), params)
    # decayed (the two matrices) and not decayed (biases, the scalar): two float32 buffers.
    assert layout.groups == ("float32.0", "float32.1")
    by_group = {}
    for s in layout.slots:
        by_group.setdefault(s.group, []).append(len(s.shape))
    assert sorted(map(sorted, by_group.values())) == [[0, 1, 1], [2, 2]]
    # Nothing to split: one buffer per dtype, named by the dtype.
    assert jopt.fused.packed_layout(jopt.adam(1e-2), params).groups == ("float32",)
    # A mixed buffer is refused with one line, never silently wrong.
    plain = jopt.pack_layout(params)
    state = jopt.fused.packed_init(jopt.adamw(1e-2, mask=_ndim_mask), plain, plain.pack(params))
    step = jopt.fused.packed_step(_loss, jopt.adamw(1e-2, mask=_ndim_mask), plain)
    xs, ys = _batches()
    with pytest.raises(jopt.JoptError, match="treats differently"):
        step(plain.pack(params), state, xs[0], ys[0])


ROUND_TRIP = {
    "groups+ema": lambda: jopt.with_param_ema(COMBOS["groups-overrides-lr_mult-freeze"](), 0.9),
    "lookahead(lamb)": lambda: jopt.with_lookahead(jopt.lamb(1e-2, mask=_ndim_mask), 3),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_state_round_trip_packed_to_per_leaf_and_back(name):
    tx = ROUND_TRIP[name]()
    params = _params()
    xs, ys = _batches()
    state, step, unpack = packed_train_step(_loss, params, tx)
    step = jax.jit(step)

    @jax.jit
    def tree_step(p, s, x, y):
        u, s = tx.update(jax.grad(_loss)(p, x, y), s, p)
        return jopt.apply_updates(p, u), s

    for i in range(5):
        state, _ = step(state, xs[i], ys[i])
    # packed -> per leaf: the per-leaf state has exactly tx.init's structure and goes on there.
    p_tree, s_tree = unpack(state), unpack.opt_state(state)
    assert jax.tree.structure(s_tree) == jax.tree.structure(tx.init(params))
    # per leaf -> packed: the same arrays again.
    back = unpack.pack(p_tree, s_tree)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for i in range(5, 10):
        state, _ = step(state, xs[i], ys[i])
        p_tree, s_tree = tree_step(p_tree, s_tree, xs[i], ys[i])
    for a, b in zip(jax.tree.leaves(unpack(state)), jax.tree.leaves(p_tree), strict=True):
        assert _rel(a, b) <= TOL
    # A state that belongs to another optimizer is refused with one line.
    with pytest.raises(jopt.JoptError, match="state"):
        unpack.pack(p_tree, jopt.adam(1e-2).init(params))
