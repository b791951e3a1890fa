"""Turning a config into the objects the training engine needs: model, optimizer, schedule."""

from __future__ import annotations

from typing import Any

from jopt.experiment import _registry as reg
from jopt.experiment._schema import Config


def model_kwargs(config: Config) -> dict[str, Any]:
    """The model's keyword arguments: ``hidden``/``activation`` where the model has them, the
    dropout rate from ``regularization.dropout``, and ``model.options`` verbatim."""
    fields = reg.model_fields(config.model.name)
    out: dict[str, Any] = {}
    if "hidden" in fields:
        out["hidden"] = tuple(config.model.hidden)
    if "activation" in fields:
        out["activation"] = config.model.activation
    if "dropout" in fields and config.regularization.dropout:
        out["dropout"] = config.regularization.dropout
    out.update(config.model.options)
    return out
