"""Schedules: pure ``count -> value`` functions returning float32 scalars."""

from jopt.schedules._basic import Schedule, constant, join_schedules, piecewise_constant, step_decay
from jopt.schedules._decay import (
    cosine_decay,
    exponential_decay,
    linear,
    one_cycle,
    polynomial,
    warmup_cosine_decay,
)

__all__ = [
    "Schedule",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "join_schedules",
    "linear",
    "one_cycle",
    "piecewise_constant",
    "polynomial",
    "step_decay",
    "warmup_cosine_decay",
]

# --- optax's schedule names ---
from jopt.schedules._optax_names import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    linear_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)

__all__ += [
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "linear_onecycle_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]
# --- /optax's schedule names ---
