"""reduce_on_plateau: optax's and torch's learning-rate sequences on a scripted loss sequence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.transforms import ReduceOnPlateauState, observe_plateau

# Improves, plateaus (exact repeats and sub-threshold improvements), improves again, plateaus.
LOSSES = [
    1.0, 0.9, 0.8, 0.8, 0.79995, 0.8, 0.81, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.5, 0.6, 0.6,
    0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4,
]  # fmt: skip
SETTINGS = [
    dict(factor=0.5, patience=2),
    dict(factor=0.5, patience=3, cooldown=2),
    dict(factor=0.1, patience=1, cooldown=1, min_scale=0.002),
    dict(factor=0.3, patience=2, rtol=0.2),
    dict(factor=0.5, patience=2, rtol=0.0, atol=0.05),
]


def _jopt_scales(kw, losses=LOSSES):
    return _scales(jopt.reduce_on_plateau(**kw), losses)


def _optax_scales(kw, losses=LOSSES):
    # The oracle under one scan too (an eager loop costs seconds per sequence); optax needs
    # the standard promotion rules.
    with jax.numpy_dtype_promotion("standard"):
        return _scales(optax.contrib.reduce_on_plateau(**kw), losses)


def _scales(tx, losses):
    p = {"w": jnp.ones(())}

    def step(s, v):
        u, s = tx.update(p, s, p, value=v)
        return s, u["w"]

    _, scales = jax.lax.scan(step, tx.init(p), jnp.asarray(losses, jnp.float32))
    return np.asarray(scales)


@pytest.mark.parametrize("kw", SETTINGS, ids=str)
def test_matches_optax(kw):
    ref = _optax_scales(kw)
    ours = _jopt_scales(kw)
    assert min(ref) < 1.0, "the sequence never reduced: the test would be vacuous"
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


@pytest.mark.parametrize("kw", [k for k in SETTINGS if k.get("atol", 0.0) == 0.0], ids=str)
def test_matches_torch(kw):
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        mode="min",
        factor=kw["factor"],
        patience=kw["patience"] - 1,  # torch reduces when bad epochs EXCEED patience
        threshold=kw.get("rtol", 1e-4),
        threshold_mode="rel",
        cooldown=kw.get("cooldown", 0),
        min_lr=kw.get("min_scale", 0.0),
        eps=0.0,
    )
    ref = []
    for v in LOSSES:
        sched.step(float(np.float32(v)))
        ref.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(_jopt_scales(kw), ref, rtol=1e-6)


def test_accumulation_matches_optax():
    kw = dict(factor=0.5, patience=2, accumulation_size=3)
    ref = _optax_scales(kw)
    assert min(ref) < 1.0, "the sequence never reduced: the test would be vacuous"
    np.testing.assert_allclose(_jopt_scales(kw), ref, rtol=1e-6)


def test_vmap_acts_per_member():
    # Member 0 keeps improving, member 1 plateaus: only member 1's scale drops.
    tx = jopt.chain(jopt.sgd(1.0), jopt.reduce_on_plateau(factor=0.5, patience=2))
    p = {"w": jnp.ones(3)}
    states = jax.vmap(lambda _: tx.init(p))(jnp.arange(2))
    seqs = jnp.asarray([[1.0, 0.9, 0.8, 0.7, 0.6], [1.0, 1.0, 1.0, 1.0, 1.0]], jnp.float32)

    def run(state, seq):
        def step(s, v):
            u, s = tx.update(p, s, p, value=v)
            return s, u["w"][0]

        return jax.lax.scan(step, state, seq)[1]

    out = np.asarray(jax.vmap(run)(states, seqs))
    np.testing.assert_allclose(out[0], [-1.0] * 5)
    np.testing.assert_allclose(out[1], [-1.0, -1.0, -0.5, -0.5, -0.25])


def test_observe_plateau_drives_a_chain_without_value():
    # A train step without value= only applies the scale; evaluations feed the metric.
    tx = jopt.chain(jopt.adam(1e-2), jopt.reduce_on_plateau(factor=0.5, patience=1))
    p = {"w": jnp.ones(2)}
    state = tx.init(p)
    _, state = tx.update(p, state, p)  # no value: no decision
    plateau = next(s for s in state if isinstance(s, ReduceOnPlateauState))
    assert int(plateau.count) == 0 and float(plateau.scale) == 1.0
    observe = jax.jit(observe_plateau)
    for v in (1.0, 1.0, 1.0):
        state = observe(state, jnp.float32(v))
    plateau = next(s for s in state if isinstance(s, ReduceOnPlateauState))
    assert float(plateau.scale) == 0.25
    u, _ = tx.update(p, state, p)
    adam = jopt.adam(1e-2)
    ref, ref_state = adam.update(p, adam.init(p), p)
    ref, _ = adam.update(p, ref_state, p)  # the chain's adam is on its second step
    np.testing.assert_allclose(u["w"], 0.25 * ref["w"], rtol=1e-6)


@pytest.mark.parametrize(
    "kw", [dict(factor=1.0), dict(rtol=0.0, atol=0.0), dict(patience=0), dict(rtol=2.0)]
)
def test_bad_arguments_refused(kw):
    with pytest.raises(jopt.JoptError):
        jopt.reduce_on_plateau(**kw)
