"""The pytree matrix: named parameter trees every optimizer and combinator is tested on.

optax maps updates with the parameters' structure, so it works for any pytree; jopt must too.
Each entry is a factory ``seed -> params`` with small random leaves (a few elements each, so a
whole matrix compiles fast). Tests import the groups below and cross them with
``tests/registry.py``, so a new registry entry is tested on every tree without extra work.

- :data:`PARITY_TREES`: float32 and complex trees of every shape; ``mixed`` (all containers in
  one tree) and ``complex`` are compared with optax over 100 steps for every optimizer, the
  model trees for a representative few (``tests/test_optimizers_parity.py``).
- :data:`CONTRACT_TREES`: the above plus empty trees, mixed bfloat16/float32 leaves and integer
  leaves (``tests/test_optimizers_contract.py``).
- :data:`PYTHON_NUMBER_TREE`: Python-number leaves (not jittable as data; run eagerly).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx


class Pair(NamedTuple):
    """A NamedTuple of parameters (as a hand-written model might keep them)."""

    w: Any
    b: Any


def randomize(template: Any, seed: int) -> Any:
    """``template`` with every array leaf replaced by standard-normal values of its shape and
    dtype (complex leaves get complex normals, integer leaves rounded normals); ``None`` leaves
    stay ``None``. numpy draws them: eager ``jax.random`` would compile once per leaf shape."""
    rng = np.random.default_rng(seed)

    def leaf(x):
        value = rng.standard_normal(x.shape)
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            value = value + 1j * rng.standard_normal(x.shape)
        elif not jnp.issubdtype(x.dtype, jnp.inexact):
            value = np.round(2 * value)
        return jnp.asarray(value, x.dtype)

    return jax.tree.map(leaf, template)


def _z(*shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))


# The model trees are built under jax.eval_shape (shapes only: nothing compiles), once.
@functools.cache
def _equinox_template():
    # eqx.filter keeps the inexact arrays and puts None in every other field (activations).
    def build():
        model = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(0))
        return eqx.filter(model, eqx.is_inexact_array)

    return jax.eval_shape(build)


@functools.cache
def _nnx_template():
    def build():
        return nnx.split(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), nnx.Param, ...)[1]

    return jax.eval_shape(build)


@functools.cache
def _linen_template():
    return jax.eval_shape(linen.Dense(2).init, jax.random.key(0), jnp.ones(3))


def _equinox(seed):
    return randomize(_equinox_template(), seed)


def _nnx(seed):
    return randomize(_nnx_template(), seed)


def _linen(seed):
    return randomize(_linen_template(), seed)


def _template(tree):
    return lambda seed: randomize(tree, seed)


# Every shape optax handles: the optimizer must take its structure from its input.
PARITY_TREES: dict[str, Callable[[jax.Array], Any]] = {
    "dict": _template({"a": _z(3), "b": {"c": _z(2, 4), "d": _z()}}),
    "tuple": _template((_z(3), _z(2))),
    "namedtuple": _template(Pair(w=_z(2, 3), b=_z(3))),
    "list": _template([_z(4), _z(2, 2)]),
    "nested_none": _template({"x": (_z(3), _z(2)), "y": [_z(2)], "z": None, "s": _z()}),
    "complex": _template({"z": _z(3, dtype=jnp.complex64), "r": _z(2)}),
    # Every container at once (dict, tuple, NamedTuple inside it, list, None, a 0-d leaf), in
    # few leaves: one parity run per hyperparameter set covers every shape. Top-level "a"/"b"
    # keys, so the registry's masks ({"a": ..., "b": ...}) apply as prefixes.
    "mixed": _template({"a": (_z(3), Pair(w=_z(2, 3), b=_z())), "b": [_z(2, 2), None]}),
    "equinox": _equinox,
    "flax_nnx": _nnx,
}

# Trees where a trajectory against optax is not the check (see each test), but every optimizer
# must still init, update under jit, keep structure and dtypes and give finite updates.
EXTRA_CONTRACT_TREES: dict[str, Callable[[jax.Array], Any]] = {
    "flax_linen": _linen,
    "empty_dict": lambda seed: {},
    "empty_tuple": lambda seed: (),
    "mixed_bf16_f32": _template({"h": _z(3, dtype=jnp.bfloat16), "f": (_z(2),)}),
    "int": _template({"i": _z(3, dtype=jnp.int32), "f": _z(2)}),
}

CONTRACT_TREES = {**PARITY_TREES, **EXTRA_CONTRACT_TREES}

# optax's own example (issue 11): Python-number leaves; updates must equal those for float32.
PYTHON_NUMBER_TREE = {"a": 1, "b": 2}


def make(names, seed: int, table=None) -> dict[str, Any]:
    """``{name: factory(seed + i)}`` for the named trees (default table: :data:`CONTRACT_TREES`)."""
    table = CONTRACT_TREES if table is None else table
    return {n: table[n](seed + i) for i, n in enumerate(names)}
