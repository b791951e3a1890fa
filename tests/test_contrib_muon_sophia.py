"""Muon's Newton-Schulz step and routing; Sophia against optax.contrib.sophia with obj_fn."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import jopt
from jopt.transforms import orthogonalize_via_newton_schulz


def test_newton_schulz_is_nearly_orthogonal():
    x = jax.random.normal(jax.random.key(3), (8, 5))
    o = orthogonalize_via_newton_schulz(x, jnp.asarray((3.4445, -4.775, 2.0315)))
    s = jnp.linalg.svd(o, compute_uv=False)
    # The quintic coefficients trade exactness for speed: singular values land in ~[0.7, 1.2].
    assert float(s.min()) > 0.6 and float(s.max()) < 1.25, s
    u, _, vt = jnp.linalg.svd(x, full_matrices=False)
    cos = jnp.sum(o * (u @ vt)) / (jnp.linalg.norm(o) * jnp.linalg.norm(u @ vt))
    assert float(cos) > 0.98


def test_muon_routes_matrices_and_refuses_vectors():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    tx = jopt.muon(0.1)
    state = tx.init(params)
    assert jax.tree.leaves(state.muon[0].mu)[0].shape == (3, 4)
    with pytest.raises(jopt.JoptError):
        jopt.scale_by_muon().init({"b": jnp.ones(4)})


def _loss(p):
    return jnp.sum(p["w"] ** 4) + jnp.sum(jnp.cos(p["b"]) * p["w"][:2])


@pytest.mark.parametrize(
    "kw", [dict(), dict(b1=0.9, gamma=0.05, clip_threshold=0.5, update_interval=3)], ids=str
)
def test_sophia_matches_optax(kw):
    p0 = {"w": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray([0.3, 0.1])}

    def run(tx):
        def step(c, _):
            p, s = c
            u, s = tx.update(jax.grad(_loss)(p), s, p, obj_fn=_loss)
            p = optax.apply_updates(p, u)
            return (p, s), p

        return jax.lax.scan(step, (p0, tx.init(p0)), None, length=40)[1]

    ours = jax.jit(lambda: run(jopt.sophia(0.05, **kw)))()
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.jit(lambda: run(optax.contrib.sophia(0.05, **kw)))()
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert float(jnp.max(jnp.abs(b - p0["w"][0]))) > 0  # moved
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sophia_needs_obj_fn():
    tx = jopt.sophia(0.1)
    p = {"w": jnp.ones(2)}
    with pytest.raises(jopt.JoptError):
        tx.update(p, tx.init(p), p)


FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
MUON_OPTIONS = [  # every preset, preconditioning and consistent_rms, in three programs
    dict(ns_coeffs="dion", preconditioning="spectral"),
    dict(ns_coeffs="standard", preconditioning="aol", consistent_rms=0.2, weight_decay=0.01),
    dict(
        ns_coeffs=((3.0, -3.2, 1.2), (3.4445, -4.775, 2.0315)),
        ns_steps=3,
        preconditioning="schatten",
        nesterov=False,
        adaptive=True,
    ),
]


@pytest.mark.parametrize("kw", MUON_OPTIONS, ids=str)
def test_muon_options_match_optax(kw):
    # optax.contrib.muon's presets, preconditionings and consistent RMS, 5 steps
    keys = jax.random.split(jax.random.key(7), 4)
    p = {
        "w": jax.random.normal(keys[0], (4, 3)),
        "k": jax.random.normal(keys[1], (3, 6)),
        "b": jax.random.normal(keys[2], (3,)),
    }
    ours, theirs = jopt.muon(0.05, **kw), optax.contrib.muon(0.05, **kw)

    @functools.partial(jax.jit, compiler_options=FAST)  # one program: optax's loops eager
    def both(p):  # recompile on every call
        s1, s2, p1, p2 = ours.init(p), theirs.init(p), p, p
        for t in range(5):
            u1, s1 = ours.update(jax.tree.map(lambda x, t=t: jnp.sin(3.0 * x + t), p1), s1, p1)
            with jax.numpy_dtype_promotion("standard"):
                g2 = jax.tree.map(lambda x, t=t: jnp.sin(3.0 * x + t), p2)
                u2, s2 = theirs.update(g2, s2, p2)
            p1, p2 = jopt.apply_updates(p1, u1), optax.apply_updates(p2, u2)
        return p1, p2

    p1, p2 = both(p)
    for k in p:
        np.testing.assert_allclose(np.asarray(p1[k]), np.asarray(p2[k]), rtol=1e-5, atol=1e-6)


def test_muon_refuses_what_it_does_not_implement():
    for kw, match in [
        (dict(ns_coeffs="polar"), "unknown ns_coeffs preset 'polar'"),
        (dict(preconditioning="newton"), "unknown preconditioning 'newton'"),
        (dict(muon_weight_dimension_numbers={"v": None}), "prefix of the parameters"),
        (dict(ns_coeffs=((1.0, 0.0, 0.0),) * 6), "at most ns_steps rows"),
    ]:
        with pytest.raises(jopt.JoptError, match=match) as e:
            jopt.muon(0.1, **kw).init({"w": jnp.ones((2, 2))})
        assert "\n" not in str(e.value)


def test_muon_dimension_numbers_match_optax():
    # a 4-D kernel as matrices over chosen axes: a prefix tree (with AOL and consistent RMS)
    # and a function of the parameters (a 2-D leaf it leaves to AdamW), in one program
    M, O = jopt.MuonDimensionNumbers, optax.contrib.MuonDimensionNumbers
    keys = jax.random.split(jax.random.key(7), 3)
    p = {
        "w": jax.random.normal(keys[0], (4, 3)),
        "c": jax.random.normal(keys[1], (3, 2, 4, 5)),
        "b": jax.random.normal(keys[2], (3,)),
    }
    kw = dict(consistent_rms=0.2, preconditioning="aol")
    pairs = [
        (
            jopt.muon(
                0.05,
                muon_weight_dimension_numbers={"w": M(), "c": M((0, 1, 2), 3), "b": None},
                **kw,
            ),
            optax.contrib.muon(
                0.05,
                muon_weight_dimension_numbers={"w": O(), "c": O((0, 1, 2), 3), "b": None},
                **kw,
            ),
        ),
        (
            jopt.muon(0.05, muon_weight_dimension_numbers=lambda t: _four_d(t, M(1, (0, 3)))),
            optax.contrib.muon(
                0.05, muon_weight_dimension_numbers=lambda t: _four_d(t, O(1, (0, 3)))
            ),
        ),
    ]

    @functools.partial(jax.jit, compiler_options=FAST)
    def run(p):
        out = []
        for ours, theirs in pairs:
            s1, s2, p1, p2 = ours.init(p), theirs.init(p), p, p
            for t in range(2):
                u1, s1 = ours.update(jax.tree.map(lambda x, t=t: jnp.sin(3 * x + t), p1), s1, p1)
                with jax.numpy_dtype_promotion("standard"):
                    g2 = jax.tree.map(lambda x, t=t: jnp.sin(3 * x + t), p2)
                    u2, s2 = theirs.update(g2, s2, p2)
                p1, p2 = jopt.apply_updates(p1, u1), optax.apply_updates(p2, u2)
            out.append((p1, p2))
        return out

    for p1, p2 in run(p):
        for k in p:
            np.testing.assert_allclose(np.asarray(p1[k]), np.asarray(p2[k]), rtol=1e-5, atol=2e-6)
            assert float(jnp.max(jnp.abs(p1[k] - p[k]))) > 1e-3  # every leaf moved


def _four_d(tree, dims):
    return jax.tree.map(lambda x: dims if x.ndim == 4 else None, tree)
