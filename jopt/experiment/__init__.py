"""Experiments: typed YAML configs, the runner, sweeps, run artefacts, reports and checkpoints.

``load_config`` / ``validate_config`` are light; ``run``, ``resume``, ``sweep`` and ``protocol``
import JAX, the training engine and matplotlib on first use.
"""

from jopt.experiment._load import config_from_dict, dump_config, load_config, replace_dotted
from jopt.experiment._schema import Config, to_dict
from jopt.experiment._validate import validate_config

_LAZY = {
    "run": "jopt.experiment._runner",
    "resume": "jopt.experiment._runner",
    "sweep": "jopt.experiment._sweep",
    "protocol": "jopt.experiment._sweep",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jopt.experiment' has no attribute {name!r}")


__all__ = [
    "Config",
    "config_from_dict",
    "dump_config",
    "load_config",
    "protocol",
    "replace_dotted",
    "resume",
    "run",
    "sweep",
    "to_dict",
    "validate_config",
]
