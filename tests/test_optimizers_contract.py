"""The contract every registered optimizer meets (see ``tests/registry.py``).

For each entry: it converges on an ill-conditioned quadratic and on 2-D Rosenbrock (steps run
under one ``lax.scan``, jitted once), it runs under ``jax.jit``, keeps float32 and bfloat16
parameter dtypes and its state dtypes, accepts unknown extra arguments, gives finite updates
for zero gradients, and is traced only once over repeated jitted calls.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TraceCounter
from pytrees import CONTRACT_TREES, PYTHON_NUMBER_TREE, make
from registry import REGISTRY

import jopt
from jopt.core import inexact_dtype

CASES = list(REGISTRY.values())
# These programs run a few steps on tiny trees: compile time is all their cost, and XLA's
# backend optimisations do not change what they compute.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# f(w) = 1/2 sum a_i (w_i - c_i)^2, curvatures 1..10 (condition number 10), w0 = 0.
_A = {"b": jnp.array(3.0), "w": jnp.array([1.0, 2.0, 5.0, 10.0])}
_C = {"b": jnp.array(-1.0), "w": jnp.array([1.0, -2.0, 0.5, 3.0])}


def quadratic(p):
    terms = jax.tree.map(lambda a, x, c: jnp.sum(0.5 * a * (x - c) ** 2), _A, p, _C)
    return sum(jax.tree.leaves(terms))


def rosenbrock(p):
    x, y = p["xy"][0], p["xy"][1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _minimise(tx, loss, params, steps):
    def step(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return (jopt.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return p


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_converges(case):
    (qkw, qsteps, qtol), (rkw, rsteps, rtol) = case.quadratic, case.rosenbrock
    q0 = jax.tree.map(jnp.zeros_like, _C)
    r0 = {"xy": jnp.array([-1.2, 1.0])}  # the classical start, f = 24.2

    @jax.jit
    def both():
        q = _minimise(case.factory(**qkw), quadratic, q0, qsteps)
        r = _minimise(case.factory(**rkw), rosenbrock, r0, rsteps)
        return quadratic(q) / quadratic(q0), jnp.linalg.norm(r["xy"] - 1.0)

    q_ratio, r_dist = (float(x) for x in both())
    assert q_ratio <= qtol, f"quadratic: loss ratio {q_ratio:.2e} > {qtol:.0e}"
    assert r_dist <= rtol, f"rosenbrock: distance to (1, 1) {r_dist:.2e} > {rtol:.0e}"


def _params(dtype):
    return {
        "w": jnp.linspace(-1.0, 1.0, 5).astype(dtype),
        "m": {"k": jnp.full((2, 3), 0.5).astype(dtype)},
    }


def _dtypes(tree):
    return [jnp.asarray(x).dtype for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jit_dtypes_extra_args_single_trace(case, dtype):
    tx = case.factory(**case.quadratic[0])

    def loss(p):
        return sum(jnp.sum(jnp.square(x.astype(jnp.float32) - 2.0)) for x in jax.tree.leaves(p))

    def step(params, state, grad_scale):
        value, grads = jax.value_and_grad(loss)(params)
        grads = jax.tree.map(lambda g: g * grad_scale.astype(g.dtype), grads)
        # Unknown extra arguments must be accepted and ignored.
        updates, state = tx.update(grads, state, params, value=value, not_a_real_arg=3)
        return jopt.apply_updates(params, updates), state, updates

    counter = TraceCounter(step)
    jstep = jax.jit(counter, compiler_options=FAST_COMPILE)
    params = _params(dtype)
    state0 = tx.init(params)
    state = state0
    # Zero gradients first (fresh moments: 0/0 hazards), then real ones; a float32 array
    # scale keeps one trace for both.
    for scale in (0.0, 0.0, 1.0, 1.0, 1.0):
        params, state, updates = jstep(params, state, jnp.asarray(scale, jnp.float32))
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((params, state)))
    assert counter.count == 1, f"traced {counter.count} times"
    assert _dtypes(params) == [jnp.dtype(dtype)] * 2
    assert _dtypes(updates) == [jnp.dtype(dtype)] * 2
    assert _dtypes(state) == _dtypes(state0)
    # Floating state slots are float32 or wider, even for bfloat16 params.
    assert all(d.itemsize >= 4 for d in _dtypes(state) if jnp.issubdtype(d, jnp.floating))
    assert float(loss(params)) < float(loss(_params(dtype))), "no progress in 3 steps"


# --- the pytree matrix (tests/pytrees.py): every entry on every tree shape --------------------


def _float32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


# "mixed" holds a dict at the top with a tuple, a NamedTuple, a list, a None and a 0-d leaf
# inside: it covers "dict" and "nested_none" (nested dicts: the dtype test's parameters).
MATRIX_TREES = [n for n in CONTRACT_TREES if n not in ("dict", "nested_none")]


@pytest.fixture(scope="module")
def matrix():
    return make(MATRIX_TREES, 1129)


def _two_steps(tx, params):
    state0 = tx.init(params)
    # The parameters themselves serve as gradients: nonzero, and of every leaf's dtype. The
    # same params both times: integer params would round after apply_updates.
    u1, state1 = tx.update(params, state0, params, value=jnp.ones([], jnp.float32))
    u2, state2 = tx.update(params, state1, params, value=jnp.ones([], jnp.float32))
    return state0, u1, state2, u2


def _close(got, want, where):
    assert jax.tree.structure(got) == jax.tree.structure(want), where
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=1e-6, err_msg=where)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_tree_shape(case, matrix):
    """Structure from the input, dtypes kept, finite, stable state, and integer leaves updated
    exactly as their float32 values are (never a silent zero), on every tree of the matrix."""
    tx = case.factory(**case.quadratic[0])

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(trees):
        out = {name: _two_steps(tx, t) for name, t in trees.items()}
        return out, _two_steps(tx, _float32(trees["int"]))

    out, int_as_float = run(matrix)
    for name, params in matrix.items():
        state0, u1, state2, u2 = out[name]
        where = f"{case.name} on {name}"
        for u in (u1, u2):
            assert jax.tree.structure(u) == jax.tree.structure(params), where
            want = [inexact_dtype(x) for x in jax.tree.leaves(params)]
            assert [x.dtype for x in jax.tree.leaves(u)] == want, where
            assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u)), where
        assert jax.tree.structure(state2) == jax.tree.structure(state0), where
        assert _dtypes(state2) == _dtypes(state0), where
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state2)), where
    for got, want in zip(out["int"][1:4:2], int_as_float[1:4:2], strict=True):
        _close(got, want, f"{case.name}: integer leaves vs their float32 values")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_python_number_leaves(case):
    # optax's own example: sgd(1e-3) on {"a": 1, "b": 2} gives -0.001, -0.002.
    tx = case.factory(**case.quadratic[0])
    got = _two_steps(tx, PYTHON_NUMBER_TREE)
    want = _two_steps(tx, _float32(PYTHON_NUMBER_TREE))
    for g, w in zip((got[1], got[3]), (want[1], want[3]), strict=True):
        _close(g, w, f"{case.name}: Python numbers vs float32")


def test_sgd_on_python_numbers_is_optax_example():
    tx = jopt.sgd(1e-3)
    params = {"a": 1, "b": 2}
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_allclose([updates["a"], updates["b"]], [-0.001, -0.002], rtol=1e-6)


def _buffers(tree):
    return [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_state_holds_no_buffer_twice(case):
    """init's state shares no buffer with itself or with the params, so a jitted step can
    donate both (issue 12: skip_nonfinite held one zero twice and could not be donated)."""
    params = _params(jnp.float32)
    tx = case.factory(**case.quadratic[0])
    state = tx.init(params)
    arrays = _buffers((params, state))
    ids = [id(x) for x in arrays]
    assert len(set(ids)) == len(ids), f"{case.name}: a buffer appears twice in (params, state)"
    plain = [x for x in arrays if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
    ptrs = [x.unsafe_buffer_pointer() for x in plain]
    assert len(set(ptrs)) == len(ptrs), f"{case.name}: two leaves share one device buffer"
    # A second init gives fresh buffers too (nothing cached in the transform is handed out).
    again = set(map(id, _buffers(tx.init(params))))
    assert not again & set(map(id, _buffers(state))), f"{case.name}: init hands out a cached array"


# --- optax wrappers around jopt optimizers (issue 11) -----------------------------------------


def test_optax_masked_around_jopt_adam():
    # optax.masked hands the inner transform MaskedNode leaves for the masked-out parameters.
    import optax

    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    tx = optax.masked(jopt.adam(1.0), {"a": False, "b": True})
    with jax.numpy_dtype_promotion("standard"):
        ref = optax.masked(optax.adam(1.0), {"a": False, "b": True})
        want, _ = ref.update(params, ref.init(params), params)
    got, _ = tx.update(params, tx.init(params), params)
    _close(got, want, "optax.masked(jopt.adam)")
    np.testing.assert_array_equal(got["a"], params["a"])  # masked: gradients pass through


def test_optax_partition_with_an_empty_label():
    import optax

    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    labels = {"a": "x", "b": "x"}  # "y" labels no parameter: its transform sees an empty tree
    tx = optax.partition({"x": jopt.adam(1.0), "y": jopt.sgd(1.0, momentum=0.9)}, labels)
    state = tx.init(params)
    got, state = tx.update(params, state, params)
    got, _ = tx.update(params, state, params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(got))
