"""Combinators on every tree shape of the matrix (tests/pytrees.py).

Each combinator is configured so that, by its definition, it must leave the optimizer's
updates unchanged (``accumulate`` with k=1, ``skip_nonfinite`` on finite gradients, lookahead
with ``sync_period=1, slow_step_size=1``, ...), and is compared with plain Adam over three steps
on tuple, NamedTuple, list, None-holding, complex, equinox, flax NNX and empty trees. Path
rules (groups, freeze, reset) are checked with tuple-index paths: a tuple or list position is a
decimal path segment (``"0/kernel"``), a NamedTuple or dataclass field its name.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from pytrees import make

import jopt
from jopt.combinators._paths import leaf_paths

# "list" and "empty_tuple" behave as "tuple" and "empty_dict" here; the registry contract test
# runs the registered combinators on those at the top level too.
TREES = ["tuple", "namedtuple", "nested_none", "complex", "equinox", "flax_nnx", "empty_dict"]
LR = 0.05
STEPS = 2


@pytest.fixture(scope="module")
def trees():
    return make(TREES, 404)


def _run(tx, params):
    state = tx.init(params)
    out = []
    for i in range(STEPS):
        grads = jax.tree.map(lambda p, i=i: p * (1.0 + i), params)
        updates, state = tx.update(grads, state, params)
        params = jopt.apply_updates(params, updates)
        out.append(updates)
    return out, state


def _assert_close(a, b, rtol, where):
    assert jax.tree.structure(a) == jax.tree.structure(b), where
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, err_msg=where)


# name: (wrapped optimizer, rtol). 1e-6: the same maths, fused differently by XLA (a
# lax.cond branch) at most an ulp or two apart. with_hparams stores b2 as a float32 array, so
# 1 - b2 is rounded in float32 (1.3e-5 relative), as optax.inject_hyperparams does.
SAME_AS_ADAM = {
    "with_hparams": (jopt.with_hparams(jopt.adam)(LR), 1e-4),
    "accumulate_k1": (jopt.accumulate(jopt.adam(LR), 1), 1e-6),
    "skip_nonfinite": (jopt.skip_nonfinite(jopt.adam(LR), max_consecutive=2), 1e-6),
    "with_param_ema": (jopt.with_param_ema(jopt.adam(LR), decay=0.5), 1e-6),
    "with_lookahead_sync1": (jopt.with_lookahead(jopt.adam(LR), 1, 1.0), 1e-5),
    "with_norms": (jopt.with_norms(jopt.adam(LR)), 1e-6),
    "with_precision": (jopt.with_precision(jopt.adam(LR)), 1e-6),
    "groups_default_only": (jopt.groups([], default=jopt.adam(LR)), 1e-6),
}


@pytest.mark.parametrize("name", list(SAME_AS_ADAM))
def test_combinator_is_exact_on_every_tree(name, trees):
    tx, rtol = SAME_AS_ADAM[name]
    plain = jopt.adam(LR)

    @jax.jit
    def run(trees):
        return {n: (_run(tx, t)[0], _run(plain, t)[0]) for n, t in trees.items()}

    for n, (ours, ref) in run(trees).items():
        _assert_close(ours, ref, rtol, f"{name} on {n}")


def test_param_ema_on_every_tree_is_its_definition(trees):
    tx = jopt.with_param_ema(jopt.adam(LR), decay=0.5)

    @jax.jit
    def run(params):
        state = tx.init(params)
        updates, state = tx.update(params, state, params)
        new = jopt.apply_updates(params, updates)
        return jopt.ema_params(state), jax.tree.map(lambda p, q: 0.5 * p + 0.5 * q, params, new)

    got, want = run(trees)
    for n in trees:
        _assert_close(got[n], want[n], 1e-6, n)


# (tree, frozen pattern, paths that must be frozen). Tuple/list positions are numbers.
FREEZE_CASES = [
    ("tuple", "/0", ["0"]),
    ("namedtuple", "/w", ["w"]),
    ("nested_none", "x/0", ["x/0"]),
    ("equinox", "layers/0/**", ["layers/0/weight", "layers/0/bias"]),
    ("flax_nnx", "kernel/**", ["kernel/value"]),
]


@pytest.mark.parametrize("tree,pattern,frozen", FREEZE_CASES, ids=[c[0] for c in FREEZE_CASES])
def test_freeze_by_tuple_index_path(tree, pattern, frozen, trees):
    params = trees[tree]
    tx = jopt.groups([("frozen", pattern, "freeze")], default=jopt.with_hparams(jopt.adam)(LR))
    updates, _ = _run(tx, params)
    paths = leaf_paths(params)
    ref = jopt.with_hparams(jopt.adam)(LR)
    ref_updates, _ = _run(ref, params)
    for step_u, step_ref in zip(updates, ref_updates, strict=True):
        for path, u, r in zip(
            paths, jax.tree.leaves(step_u), jax.tree.leaves(step_ref), strict=True
        ):
            if path in frozen:
                assert not np.any(np.asarray(u)), f"{tree}: frozen {path} moved"
            else:
                # Adam is per leaf, so the trained group equals Adam on all leaves there.
                np.testing.assert_allclose(u, r, rtol=1e-6, err_msg=f"{tree} {path}")
    assert sorted(p for p in paths if p in frozen) == sorted(frozen)


def test_reset_by_tuple_index_path(trees):
    params = trees["tuple"]
    tx = jopt.adam(LR)
    _, state = _run(tx, params)
    fresh = jopt.reset(state, "/0")
    mu = fresh[0].mu
    assert not np.any(np.asarray(mu[0])) and np.any(np.asarray(mu[1]))


def _poison(tree):
    """``tree`` with a NaN in its first inexact leaf (unchanged if it has none)."""
    leaves, treedef = jax.tree.flatten(tree)
    for i, x in enumerate(leaves):
        if jax.numpy.issubdtype(x.dtype, jax.numpy.inexact) and x.size:
            leaves[i] = x.reshape(-1).at[0].set(jax.numpy.nan).reshape(x.shape)
            break
    return jax.tree.unflatten(treedef, leaves)


def test_update_and_apply_puts_the_guard_around_the_step_on_every_tree():
    """``jopt.update_and_apply`` with ``skip_nonfinite`` outermost (one ``lax.cond`` around
    the update and ``p + u``) against the guard as a plain transformation, over a finite, a
    NaN and a finite step: the skipped step keeps parameters and inner state bitwise, and both
    paths end equal up to float rounding, on every tree shape (int and bfloat16 leaves too)."""
    from jopt.combinators import update_and_apply
    from jopt.core import GradientTransformation

    guard = jopt.skip_nonfinite(jopt.adam(LR))
    plain = GradientTransformation(guard.init, guard.update)  # runs the guard as a transform
    names = [*TREES, "int", "mixed_bf16_f32"]

    @jax.jit
    def run(trees):
        out = {}
        for n, params in trees.items():
            ends = []
            for tx in (guard, plain):
                p, state, seen = params, tx.init(params), []
                for i in range(3):
                    grads = jax.tree.map(lambda x, i=i: x * (1 + i), params)
                    p, state = update_and_apply(tx, _poison(grads) if i == 1 else grads, state, p)
                    seen.append((p, state.inner_state, state.skipped))
                ends.append(seen)
            out[n] = ends
        return out

    for n, (ours, ref) in run(make(names, 405)).items():
        poisoned = any(
            jax.numpy.issubdtype(x.dtype, jax.numpy.inexact) and x.size
            for x in jax.tree.leaves(ours[0][0])
        )
        assert [bool(s[2]) for s in ours] == [False, poisoned, False], n
        assert [bool(s[2]) for s in ref] == [False, poisoned, False], n
        if poisoned:  # the skipped step changed nothing, bitwise
            for a, b in zip(*(jax.tree.leaves(s[:2]) for s in ours[:2]), strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=n)
        for a, b in zip(*(jax.tree.leaves(s[-1][:2]) for s in (ours, ref)), strict=True):
            assert a.dtype == b.dtype, n
            np.testing.assert_allclose(
                np.asarray(a, np.float64 if a.dtype == jax.numpy.bfloat16 else a.dtype),
                np.asarray(b, np.float64 if b.dtype == jax.numpy.bfloat16 else b.dtype),
                rtol=1e-6,
                atol=1e-7,
                err_msg=n,
            )
