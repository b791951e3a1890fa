"""Parameter groups by path rules, describe/coverage, and reset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt.combinators._paths import leaf_paths, matches


def _params():
    # The layout of a flax model's params.
    k = jax.random.split(jax.random.key(0), 4)
    return {
        "params": {
            "embed": {"embedding": jax.random.normal(k[0], (5, 3))},
            "encoder": {
                "kernel": jax.random.normal(k[1], (3, 4)),
                "bias": jnp.array([0.0, -0.0, 1.0, 2.0]),
            },
            "head": {"kernel": jax.random.normal(k[2], (4, 2)), "bias": jnp.zeros(2)},
        }
    }


def _grads(params):
    return jax.tree.map(lambda p: jnp.cos(p) + 0.5, params)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*/bias", "params/head/bias", True),
        ("bias", "params/head/bias", True),
        ("*/bias", "bias", False),
        ("encoder/**", "params/encoder/kernel", True),
        ("encoder/**", "params/encoderx/kernel", False),
        ("/encoder/**", "params/encoder/kernel", False),
        ("/params/**/kernel", "params/head/kernel", True),
        ("*/bias|*/scale", "params/ln/scale", True),
        ("h?ad/k*", "params/head/kernel", True),
    ],
)
def test_path_patterns(pattern, path, expected):
    assert matches(pattern, path) is expected


def test_bad_patterns_raise():
    for bad in ["", "a||b", "a//b", "a**/b"]:
        with pytest.raises(jopt.JoptError):
            matches(bad, "a/b")


@pytest.fixture(scope="module")
def grouped():
    base = jopt.with_hparams(jopt.adam)(1e-2)
    return jopt.groups(
        [
            ("frozen", "embed/**", "freeze"),
            ("nodecay", "*/bias", {"eps": 1e-6}),
            ("enc", "encoder/kernel", {"lr_mult": 0.1}),
        ],
        default=base,
    )


def test_frozen_leaves_bitwise_unchanged_and_stateless(grouped):
    params = _params()
    state = grouped.init(params)
    step = jax.jit(
        lambda p, s: (lambda u, s: (jopt.apply_updates(p, u), s))(*grouped.update(_grads(p), s, p))
    )
    new = params
    for _ in range(3):
        new, state = step(new, state)
    emb = params["params"]["embed"]["embedding"]
    assert np.asarray(new["params"]["embed"]["embedding"]).tobytes() == np.asarray(emb).tobytes()
    assert not np.array_equal(new["params"]["head"]["kernel"], params["params"]["head"]["kernel"])
    # The frozen group has no state, and no other group holds a slot for the frozen leaf.
    assert "frozen" not in state.states
    state_paths = leaf_paths(state)
    assert not [p for p in state_paths if "embed" in p]
    assert set(state.states) == {"nodecay", "enc", "default"}


def test_group_overrides_and_multipliers(grouped):
    params = _params()
    state = grouped.init(params)
    hp = jopt.get_hparams(state)
    assert float(hp["groups/enc/adam/learning_rate"]) == pytest.approx(1e-3)
    assert float(hp["groups/default/adam/learning_rate"]) == pytest.approx(1e-2)
    assert float(hp["groups/nodecay/adam/eps"]) == pytest.approx(1e-6)
    updates, _ = grouped.update(_grads(params), state, params)
    # The first Adam step is -lr * g / (|g| + eps), about -lr * sign(g).
    ref = jopt.adam(1e-3)
    enc = params["params"]["encoder"]["kernel"]
    expected, _ = ref.update(_grads(enc), ref.init(enc), enc)
    # rtol 2e-5: the plain optimizer's Python-float betas round differently in float32.
    np.testing.assert_allclose(updates["params"]["encoder"]["kernel"], expected, rtol=2e-5)
    m = jopt.metrics(state)
    assert float(m["groups/enc/adam/learning_rate"]) == pytest.approx(1e-3)


def test_set_hparams_inside_a_group(grouped):
    state = grouped.init(_params())
    state = jopt.set_hparams(state, **{"groups/enc/adam/learning_rate": 0.5})
    hp = jopt.get_hparams(state)
    assert float(hp["groups/enc/adam/learning_rate"]) == 0.5
    assert float(hp["groups/default/adam/learning_rate"]) == pytest.approx(1e-2)


def test_another_optimizer_in_a_group():
    tx = jopt.groups([("head", "head/**", jopt.sgd(0.5))], default=jopt.sgd(0.1))
    params = _params()
    updates, _ = tx.update(_grads(params), tx.init(params), params)
    g = _grads(params)
    np.testing.assert_allclose(
        updates["params"]["head"]["bias"], -0.5 * g["params"]["head"]["bias"]
    )
    np.testing.assert_allclose(
        updates["params"]["encoder"]["kernel"], -0.1 * g["params"]["encoder"]["kernel"], rtol=1e-6
    )


def test_unmatched_and_doubly_matched_leaves_are_named():
    params = _params()
    tx = jopt.groups([("b", "*/bias", jopt.sgd(0.1))])
    with pytest.raises(jopt.JoptError, match="params/encoder/kernel") as e:
        tx.init(params)
    assert "params/embed/embedding" in str(e.value) and "\n" not in str(e.value)
    tx = jopt.groups([("b", "*/bias", "freeze"), ("h", "head/**", "freeze")], default=jopt.sgd(1.0))
    with pytest.raises(jopt.JoptError, match=r"params/head/bias \(b and h\)"):
        tx.init(params)


def test_bad_rules_raise():
    with pytest.raises(jopt.JoptError, match="with_hparams"):
        jopt.groups([("*/bias", {"weight_decay": 0.0})], default=jopt.adam(1e-3))
    base = jopt.with_hparams(jopt.adam)(1e-3)
    with pytest.raises(jopt.JoptError, match="unknown override 'lr_multiplier'"):
        jopt.groups([("*/bias", {"lr_multiplier": 0.0})], default=base)
    with pytest.raises(jopt.JoptError, match="'freeze'"):
        jopt.groups([("*/bias", "frozen")], default=base)
    with pytest.raises(jopt.JoptError, match="duplicate"):
        jopt.groups([("a", "x", "freeze"), ("a", "y", "freeze")], default=base)
    with pytest.raises(jopt.JoptError, match="rule 0"):
        jopt.groups([("x",)], default=base)


def test_describe_counts(grouped, capsys):
    params = _params()
    rows = {r["group"]: r for r in jopt.coverage(grouped, params)}
    assert rows["frozen (frozen)"] == {
        "group": "frozen (frozen)",
        "leaves": 1,
        "params": 15,
        "state_bytes": 0,
    }
    assert (rows["nodecay"]["leaves"], rows["nodecay"]["params"]) == (2, 6)
    assert (rows["enc"]["leaves"], rows["enc"]["params"]) == (1, 12)
    assert (rows["default"]["leaves"], rows["default"]["params"]) == (1, 8)
    # State bytes equal those of the group's optimizer on just its own leaves.
    base = grouped.default
    own = {"k": params["params"]["head"]["kernel"]}
    expected = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(base.init(own)))
    assert rows["default"]["state_bytes"] == expected
    total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(grouped.init(params)))
    assert sum(r["state_bytes"] for r in rows.values()) == total
    text = jopt.describe(grouped, params)
    assert "total" in text and text in capsys.readouterr().out
    assert text.splitlines()[-1].split() == ["total", "5", "41", str(total)]


def test_reset_a_group_reinitializes_exactly_that_group(grouped):
    params = _params()
    fresh = grouped.init(params)
    state = fresh
    for _ in range(2):
        _, state = grouped.update(_grads(params), state, params)
    state = jopt.set_hparams(state, **{"groups/enc/adam/learning_rate": 0.3})
    out = jopt.reset(state, "enc")
    # The group's moments and counters are back to init; its hyperparameters are kept.
    enc_out = jax.tree.leaves(out.states["enc"].inner_state)
    enc_fresh = jax.tree.leaves(fresh.states["enc"].inner_state)
    jax.tree.map(np.testing.assert_array_equal, enc_out, enc_fresh)
    assert float(jopt.get_hparams(out)["groups/enc/adam/learning_rate"]) == pytest.approx(0.3)
    for g in ("nodecay", "default"):
        jax.tree.map(np.testing.assert_array_equal, out.states[g], state.states[g])
    assert int(out.states["enc"].count) == 0 and int(state.states["enc"].count) == 2
    # With init_state the chosen leaves are copied from it: the same result here.
    same = jopt.reset(state, "groups/enc", init_state=fresh)
    jax.tree.map(np.testing.assert_array_equal, same, out)


def test_reset_by_path_zeroes_only_matching_slots():
    tx = jopt.adam(1e-2)
    params = _params()
    state = tx.init(params)
    _, state = tx.update(_grads(params), state, params)
    out = jopt.reset(state, "encoder/**")
    paths = leaf_paths(state)
    for path, before, after in zip(
        paths, jax.tree.leaves(state), jax.tree.leaves(out), strict=True
    ):
        if "/encoder/" in path:
            assert not np.any(after), path
            assert np.any(before), path
        else:
            np.testing.assert_array_equal(after, before)
    with pytest.raises(jopt.JoptError, match="matches no group"):
        jopt.reset(state, "nothing/**")


def test_reset_parameter_copies_need_init_state():
    tx = jopt.with_param_ema(jopt.sgd(0.1), decay=0.5)
    params = _params()
    fresh = tx.init(params)
    _, state = tx.update(_grads(params), fresh, params)
    with pytest.raises(jopt.JoptError, match="init_state"):
        jopt.reset(state, "head/**")
    out = jopt.reset(state, "head/**", init_state=fresh)
    np.testing.assert_array_equal(
        out.ema["params"]["head"]["kernel"], params["params"]["head"]["kernel"]
    )
    np.testing.assert_array_equal(
        out.ema["params"]["encoder"]["kernel"], state.ema["params"]["encoder"]["kernel"]
    )


def test_multiplied_schedule_is_the_reported_effective_rate():
    base = jopt.with_hparams(jopt.sgd)(lambda c: 1.0 / (1.0 + c.astype(jnp.float32)))
    tx = jopt.groups([("slow", "encoder/**", {"lr_mult": 0.1})], default=base)
    params = _params()
    state = tx.init(params)
    g = _grads(params)
    for step in range(2):
        updates, state = tx.update(g, state, params)
        m = jopt.metrics(state)
        rate = 1.0 / (1.0 + step)
        assert float(m["groups/default/sgd/learning_rate"]) == pytest.approx(rate)
        assert float(m["groups/slow/sgd/learning_rate"]) == pytest.approx(0.1 * rate)
        np.testing.assert_allclose(
            updates["params"]["encoder"]["kernel"],
            -0.1 * rate * g["params"]["encoder"]["kernel"],
            rtol=1e-6,
        )


def test_optax_transforms_inside_groups():
    import optax

    params = _params()
    tx = jopt.groups(
        [
            ("b", "*/bias", optax.adam(0.1)),
            ("e", "encoder/kernel", jopt.with_hparams(optax.sgd, name="osgd")(0.5, momentum=0.9)),
        ],
        default=optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1)),
    )
    with jax.numpy_dtype_promotion("standard"):  # optax itself is not strict-promotion clean
        updates, state = jax.jit(tx.update)(_grads(params), tx.init(params), params)
    g = _grads(params)
    np.testing.assert_allclose(
        updates["params"]["encoder"]["kernel"], -0.5 * g["params"]["encoder"]["kernel"], rtol=1e-6
    )
    assert set(jopt.get_hparams(state)) == {"groups/e/osgd/learning_rate", "groups/e/osgd/momentum"}


def test_describe_a_plain_transform():
    params = _params()
    (row,) = jopt.coverage(jopt.sgd(0.1, momentum=0.9), params)
    assert row == {"group": "all", "leaves": 5, "params": 41, "state_bytes": 41 * 4}


def test_rules_in_config_form():
    base = jopt.with_hparams(jopt.sgd)(0.1)
    rules = [
        {"name": "emb", "pattern": "embed/**", "freeze": True},
        {"pattern": "*/bias", "lr_mult": 0.5},
    ]
    tx = jopt.groups(rules, default=base)
    state = tx.init(_params())
    assert set(state.states) == {"rule1", "default"}
    assert float(jopt.get_hparams(state)["groups/rule1/sgd/learning_rate"]) == pytest.approx(0.05)
    with pytest.raises(jopt.JoptError, match="needs a 'pattern'"):
        jopt.groups([{"name": "x"}], default=base)
    with pytest.raises(jopt.JoptError, match="freezes"):
        jopt.groups([{"pattern": "x", "freeze": True, "lr_mult": 0.1}], default=base)
