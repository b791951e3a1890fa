"""Model adapters: one functional interface over flax linen, flax NNX and equinox modules.

The runner (``jopt.train.init_train_state``, ``apply_model``, and through them every epoch,
sweep, checkpoint and evaluation) sees a model as three pure functions of arrays:

- ``init(key, sample) -> (params, model_state)``: a pure function of the key (vmappable: a
  sweep of K seeds initialises K stacked states in one call);
- ``apply(params, model_state, x, *, train, key=None) -> (outputs, model_state)``: the forward
  pass on a batch ``x``; the model state is updated when ``train`` and returned unchanged
  otherwise;
- ``module(params, model_state)``: the library's own module again (what a checkpoint restores).

Each library keeps its own idiom:

======== ================================ =============================== =========================
library  parameters (``params``)          ``model_state``                 train / eval, dropout
======== ================================ =============================== =========================
linen    the ``"params"`` collection       the other collections           ``__call__(x, train)``;
                                          (``{"batch_stats": ...}``)      ``"dropout"`` rng stream
NNX      ``nnx.Param`` variables, as a    every other variable (``nnx.    ``model.train()`` /
         pure dict (``nnx.split`` +       BatchStat``, the ``nnx.Rngs``   ``model.eval()``; dropout
         ``nnx.to_pure_dict``)            stream keys/counts), pure dict  draws from the module's
                                                                          own ``nnx.Rngs`` streams
equinox  the floating arrays of the       the ``eqx.nn.State`` of         ``eqx.nn.inference_mode``;
         module (``eqx.partition(model,   ``eqx.nn.make_with_state``      ``key=`` split per example
         eqx.is_inexact_array)``)         (``{}`` when it has none)
======== ================================ =============================== =========================

An NNX module is built as ``build(key)`` (``Net(..., rngs=nnx.Rngs(key))``), an equinox one
as ``eqx.nn.make_with_state(build)(key)``: the key is the run's init key, so each seed of a
sweep builds its own. NNX modules take the whole batch; equinox modules take one example and
are ``jax.vmap``-ped over the batch with ``axis_name="batch"`` (an ``eqx.nn.BatchNorm`` must
use that axis name), each example with its own dropout key (``jax.random.split(key, n)``).
An NNX module's dropout does not use the runner's per-step key: its ``nnx.Rngs`` streams
advance with every training call, and their state is carried (and checkpointed) in
``model_state``, as an NNX training loop does it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError

__all__ = [
    "FRAMEWORKS",
    "EquinoxAdapter",
    "LinenAdapter",
    "ModelAdapter",
    "NNXAdapter",
    "adapt",
    "model_framework",
]

FRAMEWORKS = ("linen", "nnx", "equinox")
"""The model libraries the runner trains."""


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


class NNXAdapter(ModelAdapter):
    """A flax NNX module built by ``build(key)``; see the module docstring."""

    framework = "nnx"

    def __init__(self, build: Callable[[jax.Array], Any], name: str = "model"):
        self._build = build
        self.name = name
        self._template: Any = None

    def _built(self, key):
        from flax import nnx

        m = self._build(key)
        if not isinstance(m, nnx.Module):
            raise JoptError(
                f"model {self.name}: the NNX factory returned {_what(m)}, not an NNX module"
            )
        return m

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


def _is_param(x: Any) -> bool:
    """A floating (or complex) array, concrete or abstract: an equinox parameter."""
    if isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return False


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct))


class EquinoxAdapter(ModelAdapter):
    """An equinox module built by ``eqx.nn.make_with_state(build)(key)``; see the module
    docstring. Called on one example: ``model(x, state, *, key)`` when it has an
    ``eqx.nn.State``, else ``model(x, *, key)`` (``key`` only if ``__call__`` takes one)."""

    framework = "equinox"

    def __init__(self, build: Callable[[jax.Array], Any], name: str = "model"):
        self._build = build
        self.name = name
        self._template: Any = None

    def _built(self, key):
        import equinox as eqx

        m = self._build(key)
        if not isinstance(m, eqx.Module):
            raise JoptError(
                f"model {self.name}: the equinox factory returned {_what(m)}, not an equinox module"
            )
        return m

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


def _takes(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def model_framework(model: Any) -> str | None:
    """``"linen"``, ``"nnx"`` or ``"equinox"`` for a module class or instance (or an adapter);
    for a plain factory, ``"nnx"`` when it takes ``rngs=``, ``"equinox"`` when it takes
    ``key=``; ``None`` when it cannot tell without building. Nothing is built."""
    import flax.linen as nn

    if isinstance(model, ModelAdapter):
        return model.framework
    kind = model if isinstance(model, type) else type(model)
    if issubclass(kind, nn.Module):
        return "linen"
    from flax import nnx

    if issubclass(kind, nnx.Module):
        return "nnx"
    try:
        import equinox as eqx
    except ImportError:  # pragma: no cover - equinox is an optional extra
        eqx = None
    if eqx is not None and issubclass(kind, eqx.Module):
        return "equinox"
    if callable(model) and not isinstance(model, type):
        if _takes(model, "rngs"):
            return "nnx"
        if _takes(model, "key"):
            return "equinox"
    return None


def _infer(build: Callable, name: str) -> str:
    """The library of the module ``build(key)`` returns (built abstractly)."""
    from flax import nnx

    try:
        import equinox as eqx

        out = eqx.filter_eval_shape(build, jax.random.key(0))
    except ImportError:  # pragma: no cover
        out = nnx.eval_shape(lambda: build(jax.random.key(0)))
    except Exception as e:
        raise JoptError(f"model {name}: building it failed: {_first_line(e)}") from None
    kind = model_framework(out)
    if kind not in ("nnx", "equinox"):
        raise JoptError(
            f"model {name}: the factory returned {type(out).__name__}, not an NNX or equinox module"
        )
    return kind


def adapt(model: Any, /, framework: str | None = None, **kwargs: Any) -> ModelAdapter:
    """The :class:`ModelAdapter` of ``model``.

    Args:
        model: one of
            - a :class:`ModelAdapter` (returned as is);
            - a flax linen module instance (:class:`LinenAdapter`; no ``kwargs``);
            - an ``nnx.Module`` subclass or a factory taking ``rngs=``: built as
              ``model(**kwargs, rngs=nnx.Rngs(key))``;
            - an ``eqx.Module`` subclass or a factory taking ``key=``: built as
              ``eqx.nn.make_with_state(model)(**kwargs, key=key)``;
            - with ``framework="nnx"`` or ``"equinox"``: a function ``build(key) -> module``
              (it closes over its options); ``framework=None`` infers the library from an
              abstract build.
        framework: ``"nnx"`` or ``"equinox"`` for a ``build(key)`` function.
        **kwargs: the module's constructor arguments.

    An already built NNX or equinox module is refused: each seed must build its own.

    Example:
        >>> import jax, equinox as eqx
        >>> from jopt.models import adapt
        >>> m = adapt(eqx.nn.MLP, in_size=3, out_size=2, width_size=8, depth=1)
        >>> params, state = m.init(jax.random.key(0), jax.numpy.ones((4, 3)))
        >>> m.apply(params, state, jax.numpy.ones((4, 3)), train=False)[0].shape
        (4, 2)
    """
    if isinstance(model, ModelAdapter):
        if kwargs or framework not in (None, model.framework):
            raise JoptError(f"{model!r} is already adapted; give no options")
        return model
    name = getattr(model, "__name__", type(model).__name__)
    if framework is not None:
        if framework not in ("nnx", "equinox"):
            raise JoptError(f"framework must be 'nnx' or 'equinox', got {framework!r}")
        if kwargs:
            raise JoptError("a build(key) function takes no options; close over them")
        cls = NNXAdapter if framework == "nnx" else EquinoxAdapter
        return cls(model, name)
    kind = model_framework(model)
    if kind == "linen":
        if isinstance(model, type):
            raise JoptError(f"give a {name} instance (flax linen modules carry no parameters)")
        if kwargs:
            raise JoptError("options cannot be given with a linen module; configure the module")
        return LinenAdapter(model)
    if kind in ("nnx", "equinox") and not isinstance(model, type) and not _factory(model):
        raise JoptError(
            f"{type(model).__name__} is a built {kind} module; pass its class or a factory "
            "so each seed builds its own"
        )
    if kind == "nnx":

        def build_nnx(key):
            from flax import nnx

            return model(**kwargs, rngs=nnx.Rngs(key))

        return NNXAdapter(build_nnx, name)
    if kind == "equinox":
        return EquinoxAdapter(lambda key: model(**kwargs, key=key), name)
    if hasattr(model, "init") and hasattr(model, "apply") and not kwargs:
        return LinenAdapter(model)  # linen-like (a wrapper with init/apply)
    if callable(model) and not kwargs:
        return adapt(model, framework=_infer(model, name))
    raise JoptError(f"{name} is not a flax linen, flax NNX or equinox module, nor a factory of one")


def _factory(model: Any) -> bool:
    """A callable that is not itself a built module (a function or a class)."""
    import flax.linen as nn
    from flax import nnx

    if isinstance(model, (nn.Module, nnx.Module)):
        return False
    try:
        import equinox as eqx

        return not isinstance(model, eqx.Module)
    except ImportError:  # pragma: no cover
        return True
