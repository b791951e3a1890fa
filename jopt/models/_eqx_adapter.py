"""The equinox adapter: parameters are the module's floating arrays, the model state its
``eqx.nn.State``; one example per call, vmapped over the batch with ``axis_name="batch"``
(see ``jopt.models._adapters``)."""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.models._adapter_base import _FactoryAdapter, _library_promotion, _strong

__all__ = ["EquinoxAdapter"]


def _is_param(x: Any) -> bool:
    """A floating (or complex) array, concrete or abstract: an equinox parameter."""
    if isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return False


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct))


class EquinoxAdapter(_FactoryAdapter):
    """An equinox module built by ``eqx.nn.make_with_state(build)(key)``; see the module
    docstring. Called on one example: ``model(x, state, *, key)`` when it has an
    ``eqx.nn.State``, else ``model(x, *, key)`` (``key`` only if ``__call__`` takes one)."""

    framework = "equinox"
    library = "equinox"
    module_class = ("equinox", "Module")

    def template(self) -> tuple[Any, bool, bool]:
        """``(static, stateful, takes_key)`` from an abstract build (shapes only, built once)."""
        if self._template is None:
            import equinox as eqx

            with _library_promotion():
                model, state = eqx.filter_eval_shape(
                    lambda k: eqx.nn.make_with_state(self._built)(k), jax.random.key(0)
                )
            _, static = eqx.partition(model, _is_param)
            fixed = [x for x in jax.tree.leaves(static) if _is_array(x)]
            if fixed:
                raise JoptError(
                    f"model {self.name} (equinox) holds {len(fixed)} non-floating array(s) "
                    "outside eqx.nn.State; jopt trains the floating arrays and carries state "
                    "only through eqx.nn.State"
                )
            self._check_batch_norm(model)
            call = inspect.signature(type(model).__call__).parameters.values()
            takes_key = any(
                p.name == "key" or p.kind is inspect.Parameter.VAR_KEYWORD for p in call
            )
            self._template = (static, bool(jax.tree.leaves(state)), takes_key)
        return self._template

    def _check_batch_norm(self, model) -> None:
        import equinox as eqx

        norms = jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, eqx.nn.BatchNorm))
        for bn in norms:
            if isinstance(bn, eqx.nn.BatchNorm) and bn.axis_name not in ("batch", ("batch",)):
                raise JoptError(
                    f"model {self.name}: eqx.nn.BatchNorm(axis_name={bn.axis_name!r}) must use "
                    "axis_name='batch' (jopt vmaps the model over the batch with that name)"
                )

    def init(self, key, sample, *, dropout_key=None):
        import equinox as eqx

        _, stateful, _ = self.template()
        with _library_promotion():
            model, state = eqx.nn.make_with_state(self._built)(key)
        params, _ = eqx.partition(model, _is_param)
        return params, (_strong(state) if stateful else {})

    def apply(self, params, model_state, x, *, train, key=None):
        import equinox as eqx

        static, stateful, takes_key = self.template()
        m = eqx.nn.inference_mode(eqx.combine(params, static), value=not train)
        keys = None
        if train and takes_key and key is not None:
            keys = jax.random.split(key, x.shape[0])

        def one(xi, ki, st):
            kw = {} if ki is None else {"key": ki}
            if stateful:
                return m(xi, st, **kw)
            return m(xi, **kw), st

        state = model_state if stateful else None
        with _library_promotion():
            out, new = jax.vmap(
                one,
                in_axes=(0, None if keys is None else 0, None),
                out_axes=(0, None),
                axis_name="batch",
            )(x, keys, state)
        if not (train and stateful):
            return out, model_state
        return out, jax.tree.map(lambda a, b: jnp.asarray(a, b.dtype), new, model_state)

    def module(self, params, model_state):
        """The equinox module (``eqx.combine``); its state is ``model_state`` itself (an
        ``eqx.nn.State``, as ``eqx.nn.make_with_state`` returns it)."""
        import equinox as eqx

        return eqx.combine(params, self.template()[0])
