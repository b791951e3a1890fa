"""Experiments: typed YAML configs, the runner, sweeps, run artefacts, reports and checkpoints."""

from jopt.experiment._load import config_from_dict, dump_config, load_config, replace_dotted
from jopt.experiment._schema import Config, to_dict
from jopt.experiment._validate import validate_config

__all__ = [
    "Config",
    "config_from_dict",
    "dump_config",
    "load_config",
    "replace_dotted",
    "to_dict",
    "validate_config",
]
