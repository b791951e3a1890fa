"""``schedule: plateau`` in the runner: feed the monitored metric to the schedule after each
evaluation (``jopt.observe_plateau``, per member) and read back each member's scale."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.experiment._policy import plateau_value
from jopt.experiment._program import over_members
from jopt.experiment._schema import Config


def plateau_observer(config: Config, task: str, splits: dict, K: int) -> Any:
    """``(state, metrics, evals) -> state`` feeding ``schedule.metric`` to the plateau
    (``jopt.observe_plateau``, for each of the group's K members), for
    ``jopt.train.run_epochs``'s ``after_eval``. A metric the run does not have is refused."""
    from jopt.transforms import observe_plateau

    metric = config.schedule.metric
    if metric.endswith("_accuracy") and task != "classification":
        raise JoptError(f"schedule.metric {metric!r}: a {task} task has no accuracy")
    split, _, kind = metric.rpartition("_")
    if split != "train" and split not in splits:
        raise JoptError(f"schedule.metric {metric!r}: the run has no {split} split")
    fn = jax.jit(over_members(observe_plateau, K, (0, 0)), donate_argnums=0)

    def after_eval(state, metrics, evals):
        raw = metrics[metric] if split == "train" else evals[split][kind]
        value = plateau_value(metric, np.asarray(raw, np.float32))
        return state._replace(opt_state=fn(state.opt_state, jnp.asarray(value)))

    return after_eval


def plateau_scales(opt_state: Any, K: int) -> list[float]:
    """Each of the K members' current plateau scale (1.0 without a plateau schedule)."""
    from jopt.transforms import ReduceOnPlateauState

    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, ReduceOnPlateauState))
        if isinstance(s, ReduceOnPlateauState)
    ]
    if not found:
        return [1.0] * K
    return [float(v) for v in np.asarray(jax.device_get(found[0].scale), np.float64).reshape(K)]
