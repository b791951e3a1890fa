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
