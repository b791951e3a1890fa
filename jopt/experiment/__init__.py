"""Experiments: typed YAML configs, the runner, sweeps, run artefacts, reports and checkpoints.

``load_config`` / ``validate_config`` are light; ``run``, ``resume``, ``sweep`` and ``protocol``
import JAX, the training engine and matplotlib on first use.
"""

from jopt.experiment._artifacts import (
    atomic_write,
    check_run_dir,
    make_run_dir,
    read_json,
    read_jsonl,
)
from jopt.experiment._load import config_from_dict, dump_config, load_config, replace_dotted
from jopt.experiment._paths import check_output_dir, check_output_file
from jopt.experiment._reference import config_reference
from jopt.experiment._registry import listing
from jopt.experiment._schema import Config, to_dict
from jopt.experiment._validate import validate_config

_LAZY = {
    "bench_optimizers": "jopt.experiment._bench_txs",
    "build_optimizer": "jopt.experiment._build",
    "config_precision": "jopt.experiment._policy",
    "lr_find_losses": "jopt.experiment._lr_range",
    "load_module": "jopt.experiment._load_module",
    "fused_refusal": "jopt.experiment._build",
    "setup": "jopt.experiment._build",
    "structure_key": "jopt.experiment._build",
    "vmappable_values": "jopt.experiment._build",
    "Setup": "jopt.experiment._build",
    "is_problem": "jopt.experiment._problem",
    "markdown_table": "jopt.experiment._sweep",
    "plot_overlay": "jopt.experiment._plots",
    "plot_problem_runs": "jopt.experiment._problem_runs",
    "plot_run": "jopt.experiment._plots",
    "plot_sensitivity": "jopt.experiment._plots",
    "point_label": "jopt.experiment._sweep",
    "problem_path_from_config": "jopt.experiment._problem_runs",
    "start_distributed": "jopt.experiment._program",
    "TensorBoardTracker": "jopt.experiment._tracker",
    "markdown_to_html_table": "jopt.experiment._html_report",
    "write_html_report": "jopt.experiment._html_report",
    "tensorboard_available": "jopt.experiment._tracker",
    "write_tables": "jopt.experiment._sweep",
    "run": "jopt.experiment._runner",
    "resume": "jopt.experiment._runner",
    "sweep": "jopt.experiment._sweep",
    "protocol": "jopt.experiment._sweep",
    "check_members": "jopt.experiment._sweep",
    "expand": "jopt.experiment._sweep",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jopt.experiment' has no attribute {name!r}")


__all__ = [
    "Config",
    "Setup",
    "TensorBoardTracker",
    "atomic_write",
    "bench_optimizers",
    "build_optimizer",
    "check_members",
    "check_output_dir",
    "check_output_file",
    "check_run_dir",
    "config_from_dict",
    "config_precision",
    "config_reference",
    "dump_config",
    "expand",
    "fused_refusal",
    "is_problem",
    "listing",
    "load_config",
    "load_module",
    "lr_find_losses",
    "make_run_dir",
    "markdown_table",
    "markdown_to_html_table",
    "plot_overlay",
    "plot_problem_runs",
    "plot_run",
    "plot_sensitivity",
    "point_label",
    "problem_path_from_config",
    "protocol",
    "read_json",
    "read_jsonl",
    "replace_dotted",
    "resume",
    "run",
    "setup",
    "start_distributed",
    "structure_key",
    "sweep",
    "tensorboard_available",
    "to_dict",
    "validate_config",
    "vmappable_values",
    "write_html_report",
    "write_tables",
]
