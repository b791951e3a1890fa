"""The flax NNX adapter: parameters are the ``nnx.Param`` state as a pure dict, every other
variable (``nnx.BatchStat``, the ``nnx.Rngs`` stream keys and counts) is the model state;
``model.train()``/``model.eval()`` switch the mode (see ``jopt.models._adapters``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jopt.models._adapter_base import _FactoryAdapter, _library_promotion, _strong

__all__ = ["NNXAdapter"]


class NNXAdapter(_FactoryAdapter):
    """A flax NNX module built by ``build(key)``; see the module docstring."""

    framework = "nnx"
    library = "NNX"
    module_class = ("flax.nnx", "Module")

    def template(self) -> tuple[Any, Any, Any]:
        """``(graphdef, params, rest)`` of an abstract build (shapes only, built once)."""
        if self._template is None:
            from flax import nnx

            with _library_promotion():
                abstract = nnx.eval_shape(lambda: self._built(jax.random.key(0)))
            self._template = nnx.split(abstract, nnx.Param, ...)
        return self._template

    def init(self, key, sample, *, dropout_key=None):
        from flax import nnx

        with _library_promotion():
            _, params, rest = nnx.split(self._built(key), nnx.Param, ...)
        return nnx.to_pure_dict(params), _strong(nnx.to_pure_dict(rest))

    def _merge(self, params, model_state):
        from flax import nnx

        graphdef, abs_params, abs_rest = self.template()
        p = jax.tree.map(lambda v: v, abs_params)  # fresh states, filled in place
        r = jax.tree.map(lambda v: v, abs_rest)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(r, model_state)
        return nnx.merge(graphdef, p, r)

    def apply(self, params, model_state, x, *, train, key=None):
        from flax import nnx

        m = self._merge(params, model_state)
        if train:
            m.train()
        else:
            m.eval()
        with _library_promotion():
            out = m(x)
        if not train:
            return out, model_state
        _, _, rest = nnx.split(m, nnx.Param, ...)
        new = nnx.to_pure_dict(rest)
        return out, jax.tree.map(
            lambda a, b: jnp.asarray(a, b.dtype) if _plain(b) else a, new, model_state
        )

    def module(self, params, model_state):
        """The ``nnx.Module`` (``nnx.merge``), in training mode."""
        return self._merge(params, model_state)


def _plain(a: Any) -> bool:
    return hasattr(a, "dtype") and not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
