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
from jopt.core._tree import (
    all_finite,
    global_norm,
    map_elementwise,
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
    "all_finite",
    "apply_updates",
    "call_update",
    "chain",
    "global_norm",
    "identity",
    "map_elementwise",
    "named_chain",
    "safe_increment",
    "scalar_as",
    "squared_norm",
    "state_dtype",
    "stateless",
    "zeros_like",
]
