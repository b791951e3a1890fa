"""``make_model``: build a model by name, or pass a user's own flax module through."""

from __future__ import annotations

import inspect

import flax.linen as nn

from jopt.core.errors import JoptError
from jopt.models._adapters import ModelAdapter, adapt, model_framework
from jopt.models._cnn import CNN
from jopt.models._layers import activation, check_dtype, check_norm
from jopt.models._mlp import MLP, Linear
from jopt.models._precision import Precision, model_with_precision, precision_policy

MODELS = {"linear": Linear, "mlp": MLP, "cnn": CNN}


def make_model(
    name: str | nn.Module,
    *,
    num_outputs: int,
    precision: str | Precision | None = None,
    **kwargs,
) -> nn.Module:
    """A flax module with ``__call__(x, train: bool)``.

    Args:
        name: ``"linear"``, ``"mlp"`` or ``"cnn"``; or a ``flax.linen.Module`` instance, which is
            returned unchanged (it must accept ``(x, train)``; use the ``"dropout"`` RNG stream
            and the ``"batch_stats"`` collection if it needs them); or a flax NNX / equinox
            module class, factory or :class:`ModelAdapter`, returned as ``adapt(name,
            **kwargs)`` (``num_outputs`` is passed when its signature takes it; a precision
            other than ``float32`` is refused: such a module sets its own dtypes).
        num_outputs: number of classes, or of regression targets.
        precision: a policy name or :class:`Precision`; sets ``dtype`` and ``param_dtype``
            (also on a user module that has both fields; one without them is wrapped in a
            :class:`CastModel` that casts its parameters and inputs).
            Cannot be combined with explicit ``dtype``/``param_dtype`` options.
        **kwargs: the model's fields (``hidden``, ``activation``, ``dropout``, ``norm``,
            ``channels``, ``kernel_size``, ``dense``, ``pool``, ``dims``, ``dtype``,
            ``param_dtype``).

    Raises:
        JoptError: unknown model, unknown or invalid option.
    """
    if not isinstance(name, (str, nn.Module)) and model_framework(name) in ("nnx", "equinox"):
        # flax NNX / equinox: jopt.models.adapt
        return _adapted(name, precision, num_outputs=num_outputs, **kwargs)
    if isinstance(name, nn.Module):
        if kwargs:
            raise JoptError(
                "options cannot be given with a user module; configure the module itself"
            )
        if "train" not in inspect.signature(type(name).__call__).parameters:
            raise JoptError(f"{type(name).__name__}.__call__ must accept a 'train' argument")
        if precision is not None:
            return model_with_precision(name, precision)
        return name
    if name not in MODELS:
        raise JoptError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    cls = MODELS[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name", "num_outputs"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise JoptError(f"model {name!r}: unknown option(s) {unknown}; allowed: {sorted(fields)}")
    if int(num_outputs) < 1:
        raise JoptError(f"num_outputs must be >= 1, got {num_outputs}")
    if "activation" in kwargs:
        activation(kwargs["activation"])
    if "norm" in kwargs:
        check_norm(kwargs["norm"])
    if not 0.0 <= float(kwargs.get("dropout", 0.0)) < 1.0:
        raise JoptError(f"dropout must be in [0, 1), got {kwargs['dropout']}")
    for key in ("hidden", "channels"):
        if key in kwargs:
            seq = kwargs[key]
            if isinstance(seq, int):
                seq = [seq]
            if any(int(w) < 1 for w in seq):
                raise JoptError(f"model {key} must be positive integers, got {kwargs[key]}")
            kwargs[key] = tuple(int(w) for w in seq)
    if precision is not None:
        if "dtype" in kwargs or "param_dtype" in kwargs:
            raise JoptError("give either precision or dtype/param_dtype, not both")
        kwargs.update(precision_policy(precision).model_kwargs())
    if "dtype" in kwargs:
        kwargs["dtype"] = check_dtype("dtype", kwargs["dtype"], allow_none=True)
    if "param_dtype" in kwargs:
        kwargs["param_dtype"] = check_dtype("param_dtype", kwargs["param_dtype"], allow_none=False)
    return cls(num_outputs=int(num_outputs), **kwargs)


def _adapted(model, precision, **kwargs) -> ModelAdapter:
    """``adapt(model, **kwargs)`` for make_model (NNX / equinox), with the precision refused
    unless it is float32 (the module's own dtypes are not jopt's to change)."""
    if precision is not None:
        policy = precision_policy(precision)
        if policy.policy != "float32":
            raise JoptError(
                f"precision {policy.policy} applies to flax linen models; an NNX or equinox "
                "model sets its own dtypes (use precision float32)"
            )
    num_outputs = kwargs.pop("num_outputs")
    if isinstance(model, ModelAdapter):
        if kwargs:
            raise JoptError("options cannot be given with an adapted model; configure the module")
        return model
    target = model.__init__ if isinstance(model, type) else model
    if "num_outputs" in inspect.signature(target).parameters:
        kwargs["num_outputs"] = int(num_outputs)
    return adapt(model, **kwargs)
