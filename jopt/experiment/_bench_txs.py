"""The transforms ``jopt bench train`` times, built from a config by the one builder."""

from __future__ import annotations

import dataclasses
from typing import Any

from jopt.core.errors import JoptError
from jopt.experiment._build import build_optimizer
from jopt.experiment._schema import Config

__all__ = ["TRAIN_BENCH_IMPLS", "bench_optimizers"]

TRAIN_BENCH_IMPLS = ("grad", "optax", "jopt", "per_leaf", "fused", "packed", "grad_packed")


def bench_optimizers(config: Config, impls: list[str], steps_per_epoch: int = 1) -> dict[str, Any]:
    """The transforms ``jopt bench train`` times, by implementation name.

    ``grad`` / ``grad_packed``: the identity (the gradient-only baselines); ``jopt``,
    ``per_leaf`` and ``packed``: :func:`build_optimizer`'s transform (the same for the three:
    ``jopt bench train`` packs the parameters for ``packed`` and, where exact, ``jopt``);
    ``fused``: the same with ``optimizer.execution: fused`` (refused where that is not exact);
    ``optax``: ``optax.<name>(learning_rate, **kwargs)``, a reference that exists
    only for a config whose optimizer is that alone (no chain, groups, weight decay or schedule).
    """
    import optax

    from jopt.core import identity

    opt = config.optimizer
    out: dict[str, Any] = {}
    for impl in impls:
        if impl in ("grad", "grad_packed"):
            out[impl] = identity()
        elif impl == "optax":
            factory = getattr(optax, opt.name, None)
            if factory is None:
                raise JoptError(f"optax has no optimizer {opt.name!r}; drop 'optax' from --impl")
            extra = [
                what
                for what, on in (
                    ("optimizer.chain", bool(opt.chain)),
                    ("optimizer.groups", bool(opt.groups)),
                    ("regularization.weight_decay", config.regularization.weight_decay > 0),
                    ("a schedule", config.schedule.name != "constant"),
                )
                if on
            ]
            if extra:
                raise JoptError(
                    f"the optax reference is optax.{opt.name} alone but the config adds "
                    f"{', '.join(extra)}; drop 'optax' from --impl"
                )
            out[impl] = factory(learning_rate=float(opt.learning_rate), **dict(opt.kwargs))
        elif impl in ("jopt", "per_leaf", "packed", "fused"):
            execution = "fused" if impl == "fused" else "per_leaf"
            fused = dataclasses.replace(opt, execution=execution)
            out[impl] = build_optimizer(
                dataclasses.replace(config, optimizer=fused), steps_per_epoch=steps_per_epoch
            )
        else:
            raise JoptError(
                f"unknown implementation {impl!r}; choose from {', '.join(TRAIN_BENCH_IMPLS)}"
            )
    return out
