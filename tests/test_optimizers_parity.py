"""Parity with optax: same hyperparameters, same random pytree, same random gradients.

Each case runs 100 steps under one ``lax.scan`` for jopt and for optax, every hyperparameter
set jitted together in one program, on a tree holding every container shape (see
``problem``), and compares the parameter trajectories. The error is measured norm-wise per
leaf and step,

    err = ||p_jopt - p_optax||_2 / max(||p_optax||_2, 1e-3),

and must be <= 1e-6. Norm-wise, because an elementwise relative error is meaningless for the
few coordinates that cross zero (a 1e-9 absolute difference there is a huge relative one); the
floor only matters for the scalar leaf if it ever sits at zero. Both sides accumulate float32
rounding, so a tolerance near float32's epsilon (1.2e-7) times a few is what "the same
algorithm" can promise after 100 steps.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import optax
import pytest
from pytrees import PARITY_TREES, make, randomize
from registry import REGISTRY, resolve

STEPS = 100
CASES = [c for c in REGISTRY.values() if c.optax_factory is not None]
PARAMS_ERR_FLOOR = 1e-3
TOL = 1e-6
# The parameters must move (same norm-wise measure) by at least 500 times the tolerance, so
# that agreement within TOL says something.
MIN_MOVE = 500 * TOL
# Compile time is nearly all of this test's cost; XLA's backend (LLVM) optimisations do not
# change what the programs compute, only how fast they run.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _trajectory(tx, params, grads):
    def step(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        p = optax.apply_updates(p, u)
        return (p, s), p

    _, path = jax.lax.scan(step, (params, tx.init(params)), grads)
    return path


def _max_err(a, b):
    def leaf(x, y):
        axes = tuple(range(1, x.ndim))
        diff = jnp.sqrt(jnp.sum(jnp.square(jnp.abs(x - y)), axis=axes))
        ref = jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(jnp.abs(y)), axis=axes)), PARAMS_ERR_FLOOR)
        return jnp.max(diff / ref)

    return max(float(e) for e in jax.tree.leaves(jax.tree.map(leaf, a, b)))


def _tree_free(kwargs):
    # Hyperparameter sets that do not name parts of the tree (masks do), so they apply to any
    # tree.
    return all(not isinstance(v, dict | list | tuple) for v in kwargs.values())


def _problem(names, seed):
    trees = make(names, seed, PARITY_TREES)
    # The gradients: STEPS stacked random trees (numpy draws them; see pytrees.randomize).
    grads = randomize(jax.tree.map(lambda x: jnp.zeros((STEPS, *x.shape), x.dtype), trees), 7)
    return trees, grads


# One jitted program per optimizer: every hyperparameter set on the "mixed" tree (a dict
# holding a tuple, a NamedTuple, a list, a None and a 0-d leaf: every container shape of issue
# 11 at once, in 5 leaves) and optax's defaults on the "complex" tree, each 100 steps.
@pytest.fixture(scope="module")
def problem():
    print("parity trees: tests/pytrees.py make(['mixed', 'complex'], 20261129), grads seed 7")
    return _problem(["mixed", "complex"], 20261129)


def _compare(case, runs, trees, ours, theirs):
    for (name, kw), a, b in zip(runs, ours, theirs, strict=True):
        params = trees[name]
        where = f"{case.name} on {name} {kw}"
        assert jax.tree.structure(a) == jax.tree.structure(b), where
        moved = _max_err(b, jax.tree.map(lambda x: x[None], params))
        assert moved > MIN_MOVE, f"{where}: parameters barely moved ({moved:.1e}): vacuous"
        err = _max_err(a, b)
        assert err <= TOL, f"{where}: relative error {err:.2e} > {TOL:.0e}"


def _run(case, runs, trees, grads):
    jopt_txs = [case.factory(**resolve(kw, "jopt")) for _, kw in runs]
    optax_txs = [case.optax_factory(**resolve(kw, "optax")) for _, kw in runs]

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(trees, grads):
        pairs = [(n, trees[n], grads[n]) for n, _ in runs]
        ours = [_trajectory(tx, p, g) for tx, (_, p, g) in zip(jopt_txs, pairs, strict=True)]
        # optax itself is not written for strict dtype promotion (e.g. radam mixes int32 and
        # float32), so the oracle runs under the standard rules.
        with jax.numpy_dtype_promotion("standard"):
            theirs = [_trajectory(tx, p, g) for tx, (_, p, g) in zip(optax_txs, pairs, strict=True)]
        return ours, theirs

    return run(trees, grads)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_optax(case, problem):
    trees, grads = problem
    runs = [("mixed", kw) for kw in case.parity]
    if "complex" not in dict(case.skip_trees):
        sets = [kw for kw in case.parity if _tree_free(kw)]
        assert sets, f"{case.name}: no tree-independent parity set"
        runs.append(("complex", sets[0]))
    ours, theirs = _run(case, runs, trees, grads)
    _compare(case, runs, trees, ours, theirs)


# Model trees (equinox, flax NNX) for a representative few: one of each family (plain,
# moments, decoupled decay, sign, factored, trust ratio, matrix-wise). Their containers are
# those of "mixed"; this checks the model libraries' own node types.
REPRESENTATIVE = ["sgd", "adam", "adamw", "lion", "rmsprop", "adafactor", "lamb", "muon"]
MODEL_TREES = ["equinox", "flax_nnx"]


@pytest.fixture(scope="module")
def model_problem():
    return _problem(MODEL_TREES, 20261130)


def test_representatives_are_registered():
    assert set(REPRESENTATIVE) <= {c.name for c in CASES}


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.name in REPRESENTATIVE], ids=lambda c: c.name
)
def test_matches_optax_on_model_trees(case, model_problem):
    trees, grads = model_problem
    kw = next(kw for kw in case.parity if _tree_free(kw))
    runs = [(name, kw) for name in MODEL_TREES]
    ours, theirs = _run(case, runs, trees, grads)
    _compare(case, runs, trees, ours, theirs)


# Combinator entries (with_hparams(adam), groups(...)) are compared with optax's wrappers by
# trajectory only: their signatures are not meant to match.
@pytest.mark.parametrize("case", [c for c in CASES if c.signature_compatible], ids=lambda c: c.name)
def test_signature_matches_optax(case):
    ours = list(inspect.signature(case.factory).parameters.values())
    theirs = list(inspect.signature(case.optax_factory).parameters.values())
    assert len(ours) >= len(theirs)
    for o, t in zip(ours, theirs, strict=False):
        assert (o.name, o.kind, o.default) == (t.name, t.kind, t.default), (case.name, o, t)
    # Our extra parameters (per-slot dtypes) are keyword-only and optional: a drop-in superset.
    for o in ours[len(theirs) :]:
        assert o.kind is inspect.Parameter.KEYWORD_ONLY and o.default is not inspect.Parameter.empty
