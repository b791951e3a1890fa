"""Loading YAML into the typed config, with dotted overrides and one-line errors.

Every problem raises :class:`jopt.JoptError` whose message names the key, what was given and
what is allowed. Structural checks (unknown keys, types) are in ``_parse``; checks that need
the registries (optimizer, dataset and model names, hyperparameter ranges) are in ``_validate``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml

from jopt.experiment._parse import build_section, parse_overrides, read_yaml, set_dotted
from jopt.experiment._schema import Config, to_dict
from jopt.experiment._user_code import with_code_path
from jopt.experiment._validate import validate_config

__all__ = ["config_from_dict", "dump_config", "load_config", "replace_dotted"]


def config_from_dict(
    raw: dict,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    validate: bool = True,
    base_dir: str | None = None,
) -> Config:
    """Build a :class:`Config` from a plain dict plus ``KEY=VALUE`` overrides (``base_dir``:
    the config file's directory, for ``code_path``; see ``_user_code.with_code_path``)."""
    raw = copy.deepcopy(raw)
    for key, value in parse_overrides(overrides):
        set_dotted(raw, key, value)
    return _build(with_code_path(raw, base_dir), validate)


def load_config(
    path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), *, validate: bool = True
) -> Config:
    """Load a YAML experiment config, apply dotted overrides and check it.

    Example:
        >>> cfg = load_config("configs/quickstart.yaml", ["optimizer.learning_rate=3e-3"])
    """
    base_dir = os.path.dirname(os.path.abspath(path))
    return config_from_dict(read_yaml(path), overrides, validate=validate, base_dir=base_dir)


def replace_dotted(config: Config, items: dict[str, Any], *, validate: bool = True) -> Config:
    """A copy of ``config`` with dotted keys set (used by sweeps); checked like a loaded file."""
    raw = to_dict(config)
    for key, value in items.items():
        set_dotted(raw, key, copy.deepcopy(value))
    return _build(raw, validate)


def _build(raw: dict, validate: bool) -> Config:
    """The :class:`Config` of a plain dict, checked by ``validate_config`` when ``validate``."""
    config = build_section(Config, raw, "")
    if validate:
        validate_config(config)
    return config


def dump_config(config: Config) -> str:
    """The resolved config as YAML text (what ``config.yaml`` in a run directory holds)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)
