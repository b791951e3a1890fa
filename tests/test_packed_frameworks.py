"""``jopt.fused.packed_train_step`` on real model libraries: flax linen, flax NNX, equinox.

Each model's parameters are whatever the library hands out (a linen ``params`` dict, an NNX
``nnx.State`` from ``nnx.split``, the array half of ``eqx.partition``); ``loss_fn(params,
*batch)`` is ordinary code. The packed step must follow the per-leaf step to 1e-6 for 20 steps
(AdamW with a shape-reading decay mask, so the buffers are split by class), and ``unpack``
must give back the library's own parameter type.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt

STEPS = 20  # enough to move every parameter visibly; equivalence per step is what is tested


def _tx():
    return jopt.adamw(1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))


def _data():
    kx, ky = jax.random.split(jax.random.key(0))
    return jax.random.normal(kx, (16, 5)), jax.random.normal(ky, (16, 3))


def _compare(loss_fn, params):
    tx = _tx()
    x, y = _data()
    state, step, unpack = jopt.fused.packed_train_step(loss_fn, params, tx)
    step = jax.jit(step)

    @jax.jit
    def tree_step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        u, s = tx.update(g, s, p)
        return jopt.apply_updates(p, u), s, loss

    p, s = params, tx.init(params)
    for _ in range(STEPS):
        state, loss = step(state, x, y)
        p, s, ref = tree_step(p, s)
        assert abs(float(loss) - float(ref)) <= 1e-6 * max(1.0, abs(float(ref)))
    got = unpack(state)
    assert type(got) is type(params)
    assert jax.tree.structure(got) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    # The mask split the buffers: matrices (decayed) apart from vectors (not decayed).
    assert len(unpack.layout.groups) == 2
    return got


def test_flax_linen():
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.LayerNorm()(nn.relu(nn.Dense(8)(x))))

    model = MLP()
    x, _ = _data()
    params = model.init(jax.random.key(1), x)["params"]

    def loss_fn(params, x, y):
        return jnp.mean(jnp.square(model.apply({"params": params}, x) - y))

    _compare(loss_fn, params)


def test_flax_nnx():
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(5, 8, rngs=rngs)
            self.norm = nnx.LayerNorm(8, rngs=rngs)
            self.l2 = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.l2(self.norm(nnx.relu(self.l1(x))))

    graphdef, params = nnx.split(MLP(nnx.Rngs(1)), nnx.Param)

    def loss_fn(params, x, y):
        model = nnx.merge(graphdef, params)
        return jnp.mean(jnp.square(model(x) - y))

    got = _compare(loss_fn, params)
    nnx.merge(graphdef, got)  # the unpacked state rebuilds the module


def test_equinox():
    eqx = pytest.importorskip("equinox")  # in the "test" extra; skipped only outside it

    model = eqx.nn.MLP(5, 3, width_size=8, depth=2, key=jax.random.key(1))
    params, static = eqx.partition(model, eqx.is_array)

    def loss_fn(params, x, y):
        m = eqx.combine(params, static)
        return jnp.mean(jnp.square(jax.vmap(m)(x) - y))

    got = _compare(loss_fn, params)
    assert isinstance(eqx.combine(got, static), eqx.nn.MLP)


def _readme_blocks():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    section = text[text.index("## Benchmarks and fused execution") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_packed_examples_run():
    blocks = _readme_blocks()
    assert len(blocks) == 3  # flax linen, NNX, equinox
    for code in blocks:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
        assert float(scope["loss"]) < 0.05
