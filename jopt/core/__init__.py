"""The protocol layer: transforms, composition, updates and tree helpers."""

from jopt.core._base import (
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    ScalarOrSchedule,
    Updates,
    apply_updates,
    identity,
    stateless,
)
from jopt.core._chain import call_update, chain, named_chain
from jopt.core._leafwise import leaf_labels, leaf_norms
from jopt.core._tree import (
    abs_sq,
    all_finite,
    compute_dtype,
    global_norm,
    inexact,
    inexact_dtype,
    map_elementwise,
    real_dtype,
    safe_increment,
    scalar_as,
    squared_norm,
    state_dtype,
    zeros_like,
)
from jopt.core.errors import JoptError

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "JoptError",
    "OptState",
    "Params",
    "ScalarOrSchedule",
    "Updates",
    "abs_sq",
    "all_finite",
    "apply_updates",
    "call_update",
    "chain",
    "compute_dtype",
    "global_norm",
    "identity",
    "inexact",
    "inexact_dtype",
    "leaf_labels",
    "leaf_norms",
    "map_elementwise",
    "named_chain",
    "real_dtype",
    "safe_increment",
    "scalar_as",
    "squared_norm",
    "state_dtype",
    "stateless",
    "zeros_like",
]
