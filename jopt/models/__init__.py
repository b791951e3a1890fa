"""Models: flax ``linear``, ``mlp`` and ``cnn``, or a user's own module (flax linen, flax NNX or
equinox: :func:`adapt`), via ``make_model``;
and the precision policy (:class:`Precision`) that models and train steps read."""

from jopt.models._adapters import (
    FRAMEWORKS,
    EquinoxAdapter,
    LinenAdapter,
    ModelAdapter,
    NNXAdapter,
    adapt,
    model_framework,
)
from jopt.models._cnn import CNN
from jopt.models._layers import ACTIVATIONS
from jopt.models._mlp import MLP, Linear
from jopt.models._precision import (
    MATMUL_PRECISIONS,
    PRECISIONS,
    CastModel,
    Precision,
    cast_floating,
    model_with_precision,
    module_dtype_fields,
    precision_policy,
)
from jopt.models._registry import MODELS, make_model

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "FRAMEWORKS",
    "MATMUL_PRECISIONS",
    "MLP",
    "MODELS",
    "PRECISIONS",
    "CastModel",
    "EquinoxAdapter",
    "Linear",
    "LinenAdapter",
    "ModelAdapter",
    "NNXAdapter",
    "Precision",
    "adapt",
    "cast_floating",
    "make_model",
    "model_framework",
    "model_with_precision",
    "module_dtype_fields",
    "precision_policy",
]
