"""Schedules: pure ``count -> value`` functions."""

from jopt.schedules._basic import Schedule, constant

__all__ = ["Schedule", "constant"]
