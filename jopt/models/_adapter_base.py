"""The model-adapter interface (:class:`ModelAdapter`), the linen adapter and the helpers the
NNX and equinox adapters share; ``jopt.models._adapters`` documents the whole design."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError

__all__ = ["LinenAdapter", "ModelAdapter"]


def _strong(tree: Any) -> Any:
    """``tree`` without weakly typed leaves (a scan carries the model state: its types must
    not change between steps); typed PRNG keys pass through."""

    def one(a):
        if not hasattr(a, "dtype") or jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return a
        return jnp.asarray(a, dtype=a.dtype)

    return jax.tree.map(one, tree)


def _library_promotion():
    """The user's library code (NNX, equinox layers) runs under JAX's standard dtype
    promotion: those libraries are not written for ``jax_numpy_dtype_promotion="strict"``."""
    return jax.numpy_dtype_promotion("standard")


def _what(x: Any) -> str:
    return "an array" if hasattr(x, "shape") and hasattr(x, "dtype") else type(x).__name__


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


class ModelAdapter:
    """The runner's view of a model (see the module docstring for each library's rules).

    Attributes:
        framework: ``"linen"``, ``"nnx"`` or ``"equinox"``.
        name: a readable name for messages (the class or factory's name).
    """

    framework: str = ""
    name: str = "model"

    def init(self, key: jax.Array, sample: Any, *, dropout_key: Any = None) -> tuple[Any, Any]:
        """``(params, model_state)`` for the init ``key``; pure (jit- and vmap-able).

        ``sample`` is a batch of inputs (its shapes matter, not its values);
        ``dropout_key`` is linen's init-time ``"dropout"`` stream (the other libraries draw
        no dropout at init and ignore it)."""
        raise NotImplementedError

    def apply(
        self, params: Any, model_state: Any, x: Any, *, train: bool, key: Any = None
    ) -> tuple[Any, Any]:
        """``(outputs, model_state)`` on the batch ``x``; the state is updated only when
        ``train`` (dropout on, batch statistics from the batch)."""
        raise NotImplementedError

    def module(self, params: Any, model_state: Any) -> Any:
        """The library's own module holding ``params`` and ``model_state``."""
        raise NotImplementedError

    def as_linen(self, model_state: Any, *, train: bool = False) -> Any:
        """An object with linen's ``apply(variables, x, **_) -> outputs`` that reads
        ``variables["params"]`` and holds ``model_state`` fixed (for tools written for linen,
        such as ``jopt.numerics.flax_loss_fn``)."""
        return _LinenView(self, model_state, train)

    def check(self, sample: Any) -> None:
        """Build and call the model abstractly (``jax.eval_shape``: nothing is computed) in
        training and in evaluation mode; raise a one-line :class:`jopt.JoptError` on failure."""
        key = jax.random.key(0)
        try:
            params, state = jax.eval_shape(self.init, key, sample)
            for train in (True, False):
                jax.eval_shape(
                    lambda p, s, x, k, t=train: self.apply(p, s, x, train=t, key=k),
                    params,
                    state,
                    sample,
                    key,
                )
        except JoptError:
            raise
        except Exception as e:
            raise JoptError(f"model {self.name} ({self.framework}): {_first_line(e)}") from None
        if not jax.tree.leaves(params):
            raise JoptError(f"model {self.name} ({self.framework}) has no trainable parameters")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class _FactoryAdapter(ModelAdapter):
    """A module built by ``build(key)`` (the NNX and equinox adapters): subclasses name their
    ``library`` and where its module base class is (imported when first built)."""

    library: str = ""
    module_class: tuple[str, str] = ("", "")  # (module, name) of the library's module base

    def __init__(self, build: Callable[[jax.Array], Any], name: str = "model"):
        self._build = build
        self.name = name
        self._template: Any = None

    def _built(self, key: jax.Array) -> Any:
        """``build(key)``, refused in one line when it is not a module of the library."""
        where, cls = self.module_class
        m = self._build(key)
        if not isinstance(m, getattr(importlib.import_module(where), cls)):
            raise JoptError(
                f"model {self.name}: the {self.library} factory returned {_what(m)}, "
                f"not an {self.library} module"
            )
        return m


class _LinenView:
    def __init__(self, adapter: ModelAdapter, model_state: Any, train: bool):
        self.adapter, self.model_state, self.train = adapter, model_state, train

    def apply(self, variables: Any, x: Any, **_: Any) -> Any:
        return self.adapter.apply(variables["params"], self.model_state, x, train=self.train)[0]


class LinenAdapter(ModelAdapter):
    """A flax linen module (or anything with linen's ``init``/``apply``): ``__call__(x, train)``,
    batch statistics in ``"batch_stats"``, dropout from the ``"dropout"`` rng stream."""

    framework = "linen"

    def __init__(self, model: Any):
        self.model = model
        self.name = type(model).__name__

    def init(self, key, sample, *, dropout_key=None):
        drop = key if dropout_key is None else dropout_key
        variables = dict(self.model.init({"params": key, "dropout": drop}, sample, train=False))
        params = variables.pop("params")
        return params, variables

    def apply(self, params, model_state, x, *, train, key=None):
        variables = {"params": params, **model_state}
        rngs = {"dropout": key} if key is not None else None
        if train and model_state:
            out, new_state = self.model.apply(
                variables, x, train=True, rngs=rngs, mutable=list(model_state)
            )
            return out, dict(new_state)
        return self.model.apply(variables, x, train=train, rngs=rngs), model_state

    def module(self, params, model_state):
        """The module bound to its variables (``model.bind``)."""
        return self.model.bind({"params": params, **model_state})
