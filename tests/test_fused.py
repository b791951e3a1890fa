"""Tree-form fused execution (``jopt.fuse``) and the packing primitives.

Every registry optimizer and combinator against per-leaf training, packed and tree-form: see
tests/test_packed_equivalence.py.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from registry import REGISTRY, resolve

import jopt
from jopt.fused import FusedState, pack, pack_layout, packed_init, packed_step, per_leaf

TOL = 1e-6


def _params():
    k = jax.random.split(jax.random.key(0), 3)
    return {
        "a": jax.random.normal(k[0], (3, 4)),
        "b": jax.random.normal(k[1], (5,)),
        "c": {"d": jax.random.normal(k[2], (2, 2)), "e": None},
    }


def _grad(params, i):
    # A deterministic, step-dependent gradient of a quadratic with a shifted minimum.
    return jax.tree.map(lambda p: (p - 0.3 * (i + 1)) * 0.7, params)


def _run(tx, params, steps=3):
    # The whole short trajectory is one jitted function: one compile instead of many eager ops.
    @jax.jit
    def run(params):
        state = tx.init(params)
        for i in range(steps):
            updates, state = tx.update(_grad(params, i), state, params)
            params = jopt.apply_updates(params, updates)
        return params, state

    return run(params)


def _max_abs_diff(a, b):
    diffs = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)
    return max(jax.tree.leaves(diffs), default=0.0)


def _case_kwargs(case):
    return resolve(case.parity[0], "jopt") if case.parity else dict(case.quadratic[0])


def test_padded_tail_of_packed_updates_is_zero():
    # What fused runs inside: the optimizer on padded packed buffers. A zero gradient in the
    # padding must give a zero update there (so global norms of updates ignore it too).
    params = _params()
    layout = pack_layout(params, multiple_of=8)
    names = ["adam", "adamax", "adagrad", "rmsprop", "sgd", "lion", "adabelief"]
    txs = [REGISTRY[n].factory(**_case_kwargs(REGISTRY[n])) for n in names if n in REGISTRY]
    assert len(txs) >= 5

    @jax.jit
    def tails(packed):
        out = []
        for tx in txs:
            state, p = tx.init(packed), packed
            for i in range(3):
                g = layout.pack(_grad(layout.unpack(p), i))
                u, state = tx.update(g, state, p)
                p = jopt.apply_updates(p, u)
                out.append(u["float32"][21:])
        return jnp.stack(out)

    np.testing.assert_array_equal(np.asarray(tails(layout.pack(params))), 0.0)


def test_lamb_trust_ratio_is_exact_packed():
    # The trust ratio reduces per leaf with segment sums over each buffer (jopt.core.leaf_norms).
    params = _params()
    ref, _ = _run(jopt.lamb(0.01, weight_decay=1e-4), params)
    got, state = _run(jopt.fuse(jopt.lamb(0.01, weight_decay=1e-4)), params)
    assert _max_abs_diff(got, ref) <= TOL
    assert not any(x.shape in {(3, 4), (2, 2), (5,)} for x in jax.tree.leaves(state.inner))
    # optax's trust ratio knows nothing of packing: per_leaf(...) unpacks around it.
    tx = jopt.fuse(
        jopt.chain(
            jopt.scale_by_adam(),
            jopt.add_decayed_weights(1e-4),
            per_leaf(optax.scale_by_trust_ratio()),
            jopt.scale_by_learning_rate(0.01),
        )
    )
    with jax.numpy_dtype_promotion("standard"):
        got, _ = _run(tx, params)
    assert _max_abs_diff(got, ref) <= TOL


def test_groups_with_per_leaf_match():
    case = REGISTRY["groups(adam)"]
    params = {"w": jnp.ones((3, 2)), "b": jnp.full((2,), 0.5)}
    kwargs = _case_kwargs(case)
    ref, _ = _run(case.factory(**kwargs), params)
    got, _ = _run(jopt.fuse(per_leaf(case.factory(**kwargs))), params)
    assert _max_abs_diff(got, ref) <= TOL


@pytest.mark.parametrize(
    "make",
    [
        lambda: optax.adam(1e-2),
        lambda: optax.chain(optax.clip_by_global_norm(0.1), optax.adamw(1e-2)),
        lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True),
    ],
    ids=["adam", "clip+adamw", "nesterov"],
)
def test_fused_accepts_optax_transforms(make):
    params = _params()
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        ref, _ = _run(make(), params)
        got, _ = _run(jopt.fuse(make()), params)
    assert _max_abs_diff(got, ref) <= TOL


def test_static_offsets_match_too():
    params = _params()
    ref, _ = _run(jopt.adam(1e-2), params)
    got, state = _run(jopt.fuse(jopt.adam(1e-2), dynamic_offsets=False), params)
    assert state.offsets == ()
    assert _max_abs_diff(got, ref) <= TOL


def test_global_norm_clipping_is_exact_on_packed_buffers():
    params = _params()
    tx = jopt.chain(jopt.clip_by_global_norm(0.05), jopt.sgd(0.1, momentum=0.9))
    ref, _ = _run(tx, params)
    got, _ = _run(jopt.fuse(tx), params)
    assert _max_abs_diff(got, ref) <= TOL
    # Zero padding adds nothing to the global norm: same clipping, same trajectory.
    padded, _ = _run(jopt.fuse(tx, pad_to=16), params)
    assert _max_abs_diff(padded, got) <= 1e-7


def test_padding_is_zero_and_never_read():
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "n": jnp.arange(3, dtype=jnp.int32)}
    packed, layout = pack(tree, multiple_of=4)
    assert layout.sizes == (("float32", 8), ("int32", 4)) and layout.multiple_of == 4
    assert layout.padding("float32") == 2 and layout.used("int32") == 3
    np.testing.assert_array_equal(np.asarray(packed["float32"]), [0, 1, 2, 3, 4, 5, 0, 0])
    # Unpacking ignores whatever the padding holds, with static and dynamic offsets.
    dirty = {"float32": packed["float32"].at[6:].set(99.0), "int32": packed["int32"]}
    for offsets in (None, layout.offsets()):
        back = layout.unpack(dirty, offsets)
        assert bool(jnp.all(back["a"] == tree["a"])) and bool(jnp.all(back["n"] == tree["n"]))
    # Padding elements belong to no leaf; the gradient there is zero.
    assert layout.segment_ids("float32").tolist() == [0] * 6 + [2, 2]
    g = jax.grad(lambda p: jnp.sum(layout.unpack(p, layout.offsets())["a"] ** 2))(
        {"float32": packed["float32"], "int32": packed["int32"].astype(jnp.float32)}
    )
    np.testing.assert_allclose(np.asarray(g["float32"]), [0, 2, 4, 6, 8, 10, 0, 0])
    # An exact multiple needs no padding.
    assert pack_layout(tree, multiple_of=3).sizes == (("float32", 6), ("int32", 3))


def test_pad_scope_sets_the_padding_of_fused_transforms():
    params = _params()  # 21 float32 elements
    tx = jopt.fuse(jopt.adam(1e-2), pad_to=4)
    with jopt.fused.pad_scope(6):  # what ZeRO-1 does: lcm(4, 6) = 12 -> 24 elements
        state = tx.init(params)
        updates, state = tx.update(params, state, params)
    assert state.inner[0].mu["float32"].shape == (24,)
    assert tx.init(params).inner[0].mu["float32"].shape == (24,)  # pad_to=4 alone: 21 -> 24
    assert jopt.fuse(jopt.adam(1e-2)).init(params).inner[0].mu["float32"].shape == (21,)
    ref, _ = jopt.adam(1e-2).update(params, jopt.adam(1e-2).init(params), params)
    assert _max_abs_diff(updates, ref) <= TOL
    # The state's padded length wins over the request: a state padded for 6 devices (e.g. a
    # checkpoint) goes on under a transform that asks for no padding, with the same updates.
    plain = jopt.fuse(jopt.adam(1e-2))
    u_pad, s_pad = plain.update(params, state, params)
    assert s_pad.inner[0].mu["float32"].shape == (24,)
    u_ref, _ = tx.update(params, state, params)
    assert _max_abs_diff(u_pad, u_ref) == 0.0
    with pytest.raises(jopt.JoptError, match="has 24 elements but the updates need 25"):
        plain.update({**params, "b": jnp.ones(9)}, state, {**params, "b": jnp.ones(9)})


def test_one_buffer_per_dtype_and_dtypes_kept():
    params = {
        "w": jnp.ones((4, 3), jnp.float32),
        "h": jnp.ones((6,), jnp.bfloat16),
        "v": jnp.ones((2,), jnp.float32),
    }
    tx = jopt.fuse(jopt.adam(1e-2))
    state = tx.init(params)
    mu = state.inner[0].mu
    assert set(mu) == {"bfloat16", "float32"}
    assert mu["float32"].shape == (14,) and mu["bfloat16"].shape == (6,)
    assert mu["bfloat16"].dtype == jnp.float32  # low-precision params keep float32 moments
    got, state = _run(tx, params, steps=2)
    ref, _ = _run(jopt.adam(1e-2), params, steps=2)
    assert jax.tree.map(lambda x: x.dtype, got) == jax.tree.map(lambda x: x.dtype, params)
    assert (
        _max_abs_diff(
            jax.tree.map(lambda x: x.astype(jnp.float32), got),
            jax.tree.map(lambda x: x.astype(jnp.float32), ref),
        )
        <= TOL
    )


def test_extra_args_forwarded_and_traced_once():
    from helpers import TraceCounter

    params = _params()
    tx = jopt.fuse(jopt.adam(1e-2))
    counter = TraceCounter(tx.update)
    update = jax.jit(counter)
    state = tx.init(params)
    for i in range(3):
        _, state = update(_grad(params, i), state, params, value=jnp.float32(i))
    assert counter.count == 1


def test_pack_roundtrip_and_segments():
    tree = {
        "a": jnp.arange(6.0).reshape(2, 3),
        "n": jnp.arange(3, dtype=jnp.int32),
        "s": jnp.float32(7.0),
        "z": jnp.zeros((0, 4)),
        "m": None,
    }
    packed, layout = pack(tree)
    assert packed["float32"].shape == (7,) and packed["int32"].shape == (3,)
    back = layout.unpack(packed)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(tree), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype and bool(jnp.all(x == y))
    # segment ids give per-leaf reductions on the packed buffer (leaf order: a, n, s, z)
    seg = layout.segment_ids("float32")
    sums = jax.ops.segment_sum(packed["float32"], seg, num_segments=layout.num_leaves)
    np.testing.assert_allclose(np.asarray(sums)[[0, 2]], [15.0, 7.0])
    assert layout.nbytes() == 7 * 4 + 3 * 4


class _Block(NamedTuple):
    kernel: jax.Array
    scale: jax.Array


@pytest.mark.parametrize(
    "tree, dynamic",
    [
        ({}, True),
        ([jnp.ones(4)] * 50, True),  # few leaves: dynamic
        ([jnp.ones(4)] * 300, False),  # many leaves, no matrix: static splits
        ((jnp.ones((3, 2)), None, {"b": jnp.ones(2)}, [jnp.ones(3)] * 300), False),
        ([_Block(jnp.ones((4, 4)), jnp.ones(4)), _Block(jnp.ones((4, 4)), jnp.ones(4))], True),
        ([_Block(jnp.ones((4, 4)), jnp.ones(4))] * 2 + [jnp.ones(2)] * 300, True),
        ({"a": jnp.ones((2, 2, 3)), "b": (jnp.ones((2, 2, 3), jnp.bfloat16),)}, True),
    ],
)
def test_views_are_static_only_for_many_leaves_without_repeated_matrices(tree, dynamic):
    """``PackLayout.dynamic_views``: repeated layers (a 2-D or larger shape held twice, in any
    buffer) and small trees get dynamic slices; many leaves without one static splits."""
    assert pack_layout(tree).dynamic_views is dynamic


def test_unpack_gradient_is_a_concatenation_not_pads():
    # d/dflat of a loss on the unpacked leaves lands in the right offsets.
    tree = {"a": jnp.ones((2, 2)), "b": jnp.full((3,), 2.0)}
    packed, layout = pack(tree)
    g = jax.grad(lambda p: jnp.sum(layout.unpack(p)["b"] ** 2) + jnp.sum(layout.unpack(p)["a"]))(
        packed
    )
    np.testing.assert_allclose(np.asarray(g["float32"]), [1, 1, 1, 1, 4, 4, 4])
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: jnp.sum(layout.unpack(p)["b"])))(packed))
    assert " pad" not in jaxpr
    # With offsets as data (what fused state and packed_step use): same values and gradient,
    # and the backward pass is a concatenation, not per-leaf dynamic_update_slice.
    offsets = layout.offsets()
    assert [int(o) for o in offsets] == [0, 4]
    back = layout.unpack(packed, offsets)
    assert bool(jnp.all(back["a"] == tree["a"])) and bool(jnp.all(back["b"] == tree["b"]))

    def loss(p, o):
        leaves = layout.unpack(p, o)
        return jnp.sum(leaves["b"] ** 2) + jnp.sum(leaves["a"])

    g2 = jax.jit(jax.grad(loss))(packed, offsets)
    np.testing.assert_allclose(np.asarray(g2["float32"]), [1, 1, 1, 1, 4, 4, 4])
    jaxpr = str(jax.make_jaxpr(jax.grad(loss))(packed, offsets))
    assert "dynamic_update_slice" not in jaxpr and " pad" not in jaxpr
    with pytest.raises(jopt.JoptError, match="offsets"):
        layout.unpack(packed, offsets[:1])


def test_packed_step_matches_unfused_training():
    params = _params()
    x = jnp.linspace(-1.0, 1.0, 5)

    def loss_fn(p, x):
        return (
            jnp.sum(jnp.square(p["a"] @ jnp.ones(4) - 1.0))
            + jnp.sum((p["b"] * x) ** 2)
            + (jnp.sum(jnp.square(p["c"]["d"])))
        )

    tx = jopt.adamw(1e-2, weight_decay=1e-2)
    ref, ref_state = params, tx.init(params)
    for _ in range(3):
        g = jax.grad(loss_fn)(ref, x)
        u, ref_state = tx.update(g, ref_state, ref)
        ref = jopt.apply_updates(ref, u)

    packed, layout = pack(params)
    state = packed_init(tx, layout, packed)
    step = jax.jit(packed_step(loss_fn, tx, layout))
    for _ in range(3):
        packed, state, loss = step(packed, state, x)
    assert loss.shape == () and jnp.isfinite(loss)
    assert _max_abs_diff(layout.unpack(packed), ref) <= TOL
    assert jopt.fused.packed_step is packed_step  # the documented spelling works


def test_checkpoint_roundtrip_of_packed_state(tmp_path):
    import orbax.checkpoint as ocp

    params = _params()
    tx = jopt.fuse(jopt.adam(1e-2))
    p1, state = _run(tx, params, steps=2)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "state", {"params": p1, "opt": state})
    ckpt.wait_until_finished()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": p1, "opt": state})
    restored = ckpt.restore(tmp_path / "state", target)
    restored_state = (
        FusedState(*restored["opt"])
        if not isinstance(restored["opt"], FusedState)
        else restored["opt"]
    )
    restored_state = jax.tree.unflatten(jax.tree.structure(state), jax.tree.leaves(restored_state))
    # Continue from the restored and from the live state: identical trajectories.
    a, _ = _continue(tx, p1, state)
    b, _ = _continue(tx, restored["params"], restored_state)
    assert _max_abs_diff(a, b) == 0.0


def _continue(tx, params, state):
    for i in range(2):
        u, state = tx.update(_grad(params, i), state, params)
        params = jopt.apply_updates(params, u)
    return params, state


def test_bad_input_raises_jopt_error():
    with pytest.raises(jopt.JoptError, match="gradient transformation"):
        jopt.fuse(object())
    with pytest.raises(jopt.JoptError, match="gradient transformation"):
        per_leaf(42)
    layout = pack_layout({"a": jnp.ones(3)})
    with pytest.raises(jopt.JoptError, match="structure"):
        layout.pack({"b": jnp.ones(3), "c": jnp.ones(1)})
    with pytest.raises(jopt.JoptError, match="shape"):
        layout.pack({"a": jnp.ones(4)})
    with pytest.raises(jopt.JoptError, match="missing"):
        layout.unpack({})
    for bad in (0, -8, 2.5, True):
        with pytest.raises(jopt.JoptError, match="positive integer"):
            jopt.fuse(jopt.adam(1e-2), pad_to=bad)
    with pytest.raises(jopt.JoptError, match="multiple_of must be a positive integer"):
        pack_layout({"a": jnp.ones(3)}, multiple_of=0)


def test_fused_under_vmap_like_a_sweep():
    # Sweeps vmap the whole step over stacked states (the offsets get a batch axis too).
    params = {"a": jnp.ones((3, 2)), "b": jnp.full((4,), 0.5)}
    tx = jopt.fuse(jopt.adam(1e-2))
    states = jax.vmap(lambda _: tx.init(params))(jnp.arange(3))
    grads = jax.tree.map(lambda x: jnp.stack([x * 0.1 * (i + 1) for i in range(3)]), params)
    stacked = jax.tree.map(lambda x: jnp.stack([x] * 3), params)
    updates, _ = jax.jit(jax.vmap(tx.update))(grads, states, stacked)
    plain = jopt.adam(1e-2)
    for i in range(3):
        ref, _ = plain.update(jax.tree.map(lambda x, i=i: x[i], grads), plain.init(params), params)
        assert _max_abs_diff(jax.tree.map(lambda x, i=i: x[i], updates), ref) <= TOL
