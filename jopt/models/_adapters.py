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

from jopt.core.errors import JoptError
from jopt.models._adapter_base import LinenAdapter, ModelAdapter, _first_line
from jopt.models._eqx_adapter import EquinoxAdapter
from jopt.models._nnx_adapter import NNXAdapter

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
