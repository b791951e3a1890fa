"""Benchmarks: update and train-step throughput, compile time and memory.

Measured against optax and the device's own memory bandwidth. This layer times and reports;
the command line (``jopt bench``, :mod:`jopt.cli`) loads configs and feeds it.
"""

from jopt.bench._memory import MemoryReport, MemoryRow, memory_report
from jopt.bench._report import SCHEMA, environment, format_table, parse_count, parse_list
from jopt.bench._roofline import Bandwidth, CopyBound, measure_bandwidth, measure_copy_bound
from jopt.bench._timing import StepStats, compile_fn, time_steps
from jopt.bench._train import TRAIN_IMPLS, run_train, train_impls
from jopt.bench._update import bench_update, make_params
from jopt.bench._update_report import update_report

__all__ = [
    "SCHEMA",
    "TRAIN_IMPLS",
    "Bandwidth",
    "CopyBound",
    "MemoryReport",
    "MemoryRow",
    "StepStats",
    "bench_update",
    "compile_fn",
    "environment",
    "format_table",
    "make_params",
    "measure_bandwidth",
    "measure_copy_bound",
    "memory_report",
    "parse_count",
    "parse_list",
    "run_train",
    "time_steps",
    "train_impls",
    "update_report",
]
