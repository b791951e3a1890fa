"""Building blocks: one factory and one state NamedTuple each."""

from jopt.transforms._adam import ScaleByAdamState, scale_by_adam
from jopt.transforms._scale import (
    ScaleByScheduleState,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from jopt.transforms._trace import TraceState, trace

__all__ = [
    "ScaleByAdamState",
    "ScaleByScheduleState",
    "TraceState",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_schedule",
    "trace",
]
