"""Every pair of features is exact, or refused at construction (docs/compatibility.md).

Each feature has an *active* setting and a *neutral* one that, by its definition, must change
nothing (weight decay 0, ``accumulate`` with k=1, lookahead syncing every step with step size
1, a freeze rule that matches no parameter, ...). For every ordered pair (A, B), A active
with B present but neutral must give exactly A alone: the run "without the second feature".
Hyperparameters are powers of two, so ``with_hparams``' float32 copies are exact and every
comparison is at 1e-6. Pairs that cannot be exact are refused with one JoptError line.

Each test compiles its runs as one program with XLA's backend (LLVM) optimisations off
(``FAST_COMPILE``): compiling is nearly all of the cost, and every comparison is between runs
compiled the same way.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt

LR, B1, B2 = 2.0**-4, 0.5, 0.75
STEPS = 4
PARAMS = {"w": jnp.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]), "b": jnp.array([0.1, -0.2, 0.3])}
NAN_STEP = 1  # the gradients of this step hold a NaN when skip_nonfinite is active
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# feature: (active setting, neutral setting)
FEATURES = {
    "clip": (0.5, 1e6),
    "l2": (0.125, 0.0),
    "l1": (0.0625, 0.0),
    "weight_decay": (0.25, 0.0),
    "mask": ({"w": True, "b": False}, {"w": False, "b": False}),
    "groups": (0.5, 1.0),  # lr_mult of the group "w"
    "freeze": ("b", "no_such_param"),  # the pattern of the frozen group
    "with_hparams": (True, True),  # exact by itself: present or absent
    "accumulate": (2, 1),
    "skip_nonfinite": (True, True),  # neutral: no NaN step
    "ema": (0.5, 0.5),  # the updates are never changed; the average is compared
    "lookahead": ((2, 0.5), (1, 1.0)),
}


def build(cfg: dict) -> jopt.GradientTransformation:
    """The optimizer with the features in ``cfg`` (feature -> setting)."""

    def base(learning_rate=LR):
        parts = []
        if "l2" in cfg:
            parts.append(jopt.add_l2(cfg["l2"]))
        if "l1" in cfg:
            parts.append(jopt.add_l1(cfg["l1"]))
        parts.append(jopt.scale_by_adam(B1, B2))
        if "weight_decay" in cfg:
            parts.append(jopt.add_decayed_weights(cfg["weight_decay"]))
        if "mask" in cfg:
            parts.append(jopt.add_decayed_weights(0.5, mask=cfg["mask"]))
        parts.append(jopt.scale_by_learning_rate(learning_rate))
        return jopt.chain(*parts)

    rules = []
    if "groups" in cfg:
        rules.append(("g", "w", {"lr_mult": cfg["groups"]}))
    if "freeze" in cfg:
        rules.append(("fz", cfg["freeze"], "freeze"))
    with_h = rules or "with_hparams" in cfg
    tx = jopt.with_hparams(base)(learning_rate=LR) if with_h else base()
    if rules:
        tx = jopt.groups(rules, default=tx)
    if "clip" in cfg:
        # Outside the groups: the norm is global. Inside, each group's chain would clip by
        # its own group's norm (as optax.multi_transform does); see the definitions test.
        tx = jopt.chain(jopt.clip_by_global_norm(cfg["clip"]), tx)
    if "ema" in cfg:
        tx = jopt.with_param_ema(tx, decay=cfg["ema"])
    if "lookahead" in cfg:
        tx = jopt.with_lookahead(tx, *cfg["lookahead"])
    if "accumulate" in cfg:
        tx = jopt.accumulate(tx, cfg["accumulate"])
    if "skip_nonfinite" in cfg:
        tx = jopt.skip_nonfinite(tx)
    return tx


def _grads(with_nan: bool):
    steps = []
    for i in range(STEPS):
        g = jax.tree.map(lambda p, i=i: jnp.cos(p * (i + 1.0)) * 3.0, PARAMS)
        if with_nan and i == NAN_STEP:
            g = {"w": g["w"].at[0, 0].set(jnp.nan), "b": g["b"]}
        steps.append(g)
    return steps


def run(cfg: dict, with_nan: bool) -> dict:
    tx = build(cfg)
    params, state = PARAMS, tx.init(PARAMS)
    path = []
    for g in _grads(with_nan):
        updates, state = tx.update(g, state, params)
        params = jopt.apply_updates(params, updates)
        path.append(params)
    out = {"params": path}
    if "ema" in cfg:
        out["ema"] = jopt.ema_params(state)
    return out


PAIRS = [(a, b) for a, b in itertools.permutations(FEATURES, 2)]


@pytest.fixture(scope="module")
def results():
    """All runs (A active alone; A active with B neutral) under one jit."""

    def active(a):
        return {a: FEATURES[a][0]}

    def everything():
        alone = {a: run(active(a), a == "skip_nonfinite") for a in FEATURES}
        paired = {
            (a, b): run({**active(a), b: FEATURES[b][1]}, a == "skip_nonfinite") for a, b in PAIRS
        }
        return alone, paired

    return jax.jit(everything, compiler_options=FAST_COMPILE)()


@pytest.mark.parametrize("a", list(FEATURES))
def test_second_feature_neutral_changes_nothing(a, results):
    alone, paired = results
    for b in FEATURES:
        if b == a:
            continue
        got, want = paired[(a, b)], alone[a]
        for key in want:
            for x, y in zip(jax.tree.leaves(got[key]), jax.tree.leaves(want[key]), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=f"{a} + {b} {key}")


def test_active_features_change_the_run(results):
    # Guards the test above against vacuity: each active feature moves the trajectory.
    alone, _ = results
    plain = jax.jit(lambda: run({}, False), compiler_options=FAST_COMPILE)()
    for a in FEATURES:
        if a in ("with_hparams", "ema"):
            continue  # exact by themselves: same updates as plain (ema adds an average)
        diff = max(
            float(jnp.max(jnp.abs(x - y)))
            for x, y in zip(
                jax.tree.leaves(alone[a]["params"]), jax.tree.leaves(plain["params"]), strict=True
            )
        )
        assert diff > 1e-4, f"{a}: active setting does not change the run"


def test_definitions_of_active_pairs():
    # freeze + weight decay: a frozen parameter is not decayed (zero gradient, decay 0.25).
    zero = jax.tree.map(jnp.zeros_like, PARAMS)
    tx = build({"freeze": "b", "weight_decay": 0.25})
    updates, _ = tx.update(zero, tx.init(PARAMS), PARAMS)
    assert not np.any(np.asarray(updates["b"]))
    np.testing.assert_allclose(updates["w"], -LR * 0.25 * PARAMS["w"], rtol=1e-6)
    # clipping inside groups is per group: each group's chain sees only its own leaves.
    g = jax.tree.map(lambda p: jnp.full_like(p, 2.0), PARAMS)
    inside = jopt.groups(
        [("g", "w", jopt.chain(jopt.clip_by_global_norm(1.0), jopt.sgd(1.0)))],
        default=jopt.chain(jopt.clip_by_global_norm(1.0), jopt.sgd(1.0)),
    )
    u, _ = inside.update(g, inside.init(PARAMS), PARAMS)
    for k in ("w", "b"):
        np.testing.assert_allclose(jnp.linalg.norm(u[k]), 1.0, rtol=1e-6)
    # groups lr_mult: the "w" group's step is half of what it is with lr_mult 1.
    g = jax.tree.map(lambda p: jnp.full_like(p, 2.0), PARAMS)
    half, full = build({"groups": 0.5}), build({"groups": 1.0})
    uh, _ = half.update(g, half.init(PARAMS), PARAMS)
    uf, _ = full.update(g, full.init(PARAMS), PARAMS)
    np.testing.assert_allclose(uh["w"], 0.5 * uf["w"], rtol=1e-6)
    np.testing.assert_allclose(uh["b"], uf["b"], rtol=1e-6)
    # accumulate + skip_nonfinite: a NaN micro-batch skips the call, not the accumulation.
    tx = build({"accumulate": 2, "skip_nonfinite": True})
    state = tx.init(PARAMS)
    nan = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), PARAMS)
    u, state = tx.update(nan, state, PARAMS)
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(u))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))


def test_vmap_over_hparams_with_every_feature():
    """vmap over the learning rate equals one run per value, with each feature active."""
    lrs = jnp.array([LR, 2 * LR], jnp.float32)

    def one(cfg, lr):
        nan = "skip_nonfinite" in cfg
        tx = build({**cfg, "with_hparams": True})
        state = tx.init(PARAMS)
        state = jopt.set_hparams(
            state, {k: lr for k in jopt.get_hparams(state) if k.endswith("learning_rate")}
        )
        params = PARAMS
        for g in _grads(nan):
            updates, state = tx.update(g, state, params)
            params = jopt.apply_updates(params, updates)
        return params

    cfgs = [{a: FEATURES[a][0]} for a in FEATURES]

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def both():
        return [
            (jax.vmap(lambda lr, c=c: one(c, lr))(lrs), [one(c, lr) for lr in lrs]) for c in cfgs
        ]

    for cfg, (batched, singles) in zip(cfgs, both(), strict=True):
        for i, single in enumerate(singles):
            got = jax.tree.map(lambda x, i=i: x[i], batched)
            for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(single), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-6, err_msg=f"vmap with {cfg}")


# --- refused pairs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: jopt.with_param_ema(jopt.accumulate(jopt.adam(LR), 2)),
        lambda: jopt.with_lookahead(jopt.accumulate(jopt.adam(LR), 2)),
    ],
    ids=["ema_outside_accumulate", "lookahead_outside_accumulate"],
)
def test_refused_pairs_raise_one_line(make):
    with pytest.raises(jopt.JoptError) as err:
        make()
    assert "\n" not in str(err.value) and "accumulate(" in str(err.value)


def test_fuse_is_exact_or_refused_for_every_feature():
    """``jopt.fuse`` around each active feature: the same run, or a JoptError at construction."""
    refused, fused = [], {}
    for a in FEATURES:
        try:
            fused[a] = jopt.fuse(build({a: FEATURES[a][0]}))
        except jopt.JoptError as e:
            assert "\n" not in str(e)
            refused.append(a)

    def both(tx, ref, grads):
        p1, s1, p2, s2 = PARAMS, tx.init(PARAMS), PARAMS, ref.init(PARAMS)
        for g in grads:
            u1, s1 = tx.update(g, s1, p1)
            u2, s2 = ref.update(g, s2, p2)
            p1, p2 = jopt.apply_updates(p1, u1), jopt.apply_updates(p2, u2)
        return p1, p2

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)  # every feature, one program
    def runs():
        return {
            a: both(tx, build({a: FEATURES[a][0]}), _grads(a == "skip_nonfinite"))
            for a, tx in fused.items()
        }

    for a, (p1, p2) in runs().items():
        for x, y in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=f"fuse with {a}")
    print("fuse refuses:", refused)
