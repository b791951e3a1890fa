"""Benchmarks: update and train-step throughput, compile time and memory.

Measured against optax and the device's own memory bandwidth. The command line is
``jopt bench`` (:mod:`jopt.bench.cmd_bench`).
"""

from jopt.bench._memory import MemoryReport, MemoryRow, memory_report
from jopt.bench._timing import StepStats, compile_fn, time_steps

__all__ = ["MemoryReport", "MemoryRow", "StepStats", "compile_fn", "memory_report", "time_steps"]
