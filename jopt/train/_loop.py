"""The host loop: one compiled epoch per iteration, evaluation on a cadence, callbacks between.

``run_epochs`` is the one training loop of jopt: :func:`jopt.train.fit` and the experiment
runner (``jopt run`` / ``jopt sweep``, a vmapped group of K runs, K = 1 included) both drive
it. The epoch function and the evaluation are compiled by the caller; the loop dispatches the
epoch, fetches its metrics, evaluates when due and hands an :class:`EpochLog` and the new state
to ``on_epoch``, which does the logging, early stopping and checkpoints, and returns True to
stop. The state passed to ``on_epoch`` is donated to the next epoch: copy what must outlive it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["EpochLog", "run_epochs"]


@dataclasses.dataclass(frozen=True)
class EpochLog:
    """What one epoch produced, on the host.

    Attributes:
        epoch: 1-based epoch number.
        metrics: the epoch function's metrics (a leading member axis for a stacked group).
        evals: ``{split: {metric: value}}`` when evaluated this epoch, else ``{}``.
        evaluated: whether evaluation was due this epoch.
        epoch_time: seconds in the epoch dispatch (compile excluded).
        eval_time: seconds in evaluation.
        elapsed: seconds since the loop started.
    """

    epoch: int
    metrics: dict
    evals: dict
    evaluated: bool
    epoch_time: float
    eval_time: float
    elapsed: float


def run_epochs(
    epoch_fn: Callable[..., tuple[Any, Any]],
    state: Any,
    data: tuple,
    *,
    epochs: int,
    on_epoch: Callable[[EpochLog, Any], bool | None],
    start_epoch: int = 0,
    evaluate: Callable[[Any], dict] | None = None,
    eval_every: int = 1,
    check_nonfinite: bool = True,
    after_eval: Callable[[Any, dict, dict], Any] | None = None,
) -> Any:
    """Run epochs ``start_epoch + 1 .. epochs`` of ``state, metrics = epoch_fn(state, *data)``.

    ``evaluate(state) -> {split: {metric: value}}`` runs after every ``eval_every``-th epoch
    and after the last one. ``on_epoch(log, state)`` runs after each epoch; True stops the
    loop. Returns the last state. ``after_eval(state, metrics, evals) -> state`` runs after each
    evaluation, before ``on_epoch``, and its state carries on (the runner feeds the validation
    metric to a plateau schedule with it: ``jopt.observe_plateau``).

    With ``check_nonfinite`` (default), ``jopt.check_state(state.opt_state)`` runs on the host
    after each epoch: a ``jopt.skip_nonfinite`` guard past its ``max_consecutive`` limit raises
    ``NonFiniteError`` (the runner passes False and applies that rule per member itself).
    """
    if check_nonfinite:
        from jopt.combinators import check_state
    t_start = time.perf_counter()
    for epoch in range(int(start_epoch) + 1, int(epochs) + 1):
        t = time.perf_counter()
        state, metrics = epoch_fn(state, *data)
        metrics = jax.device_get(metrics)
        dt = time.perf_counter() - t
        due = epoch % eval_every == 0 or epoch == epochs
        evals, t_eval = {}, 0.0
        if due and evaluate is not None:
            t = time.perf_counter()
            evals = jax.device_get(evaluate(state))
            t_eval = time.perf_counter() - t
        if due and after_eval is not None:
            state = after_eval(state, metrics, evals)
        log = EpochLog(epoch, metrics, evals, due, dt, t_eval, time.perf_counter() - t_start)
        stop = on_epoch(log, state)
        if check_nonfinite and hasattr(state, "opt_state"):
            check_state(state.opt_state)  # after the epoch's log, so the record is kept
        if stop:
            break
    return state
