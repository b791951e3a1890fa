"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; the fastai LR finder).

Train for ``T`` steps while the learning rate grows exponentially,
``η_t = η_min (η_max/η_min)^{t/(T−1)}``, and record the training loss. The loss first stays
flat (η too small), then falls, then blows up. The curve is cut at divergence (the
bias-corrected EMA of the loss exceeds ``diverge ×`` its running minimum, or a loss is not
finite), smoothed without lag, and the suggestion is the learning rate where the smoothed
loss falls fastest against ``log η`` before its minimum ("steepest descent before the minimum").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jopt.combinators import update_and_apply
from jopt.core.errors import JoptError

__all__ = [
    "LRFindResult",
    "analyse_lr_curve",
    "exponential_lrs",
    "lr_find",
    "lr_find_run",
    "lr_table_schedule",
    "plot_lr_find",
    "write_lr_find",
]


class LRFindResult(NamedTuple):
    """Attributes: ``lrs``/``losses``/``smoothed`` per step (cut at divergence); ``suggestion``;
    ``min_loss_lr`` (where the smoothed loss is lowest); ``diverged_at`` (step index or None).
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    min_loss_lr: float
    diverged_at: int | None


def exponential_lrs(min_lr: float, max_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` learning rates from ``min_lr`` to ``max_lr``, log-spaced (float32)."""
    if not (0 < min_lr < max_lr):
        raise JoptError(f"need 0 < min_lr < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    if not isinstance(num_steps, int) or num_steps < 5:
        raise JoptError(f"num_steps must be an integer >= 5, got {num_steps!r}")
    return np.geomspace(min_lr, max_lr, num_steps).astype(np.float32)


def lr_table_schedule(lrs: Any) -> Callable[[jax.Array], jax.Array]:
    """The range test's schedule: ``count -> lrs[min(count, T - 1)]`` (float32)."""
    table = jnp.asarray(lrs, jnp.float32)
    steps = table.shape[0]

    def schedule(count: jax.Array) -> jax.Array:
        return table[jnp.minimum(count, steps - 1)]

    return schedule


def lr_find_run(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    tx: Any,
    batches: Any,
    num_steps: int,
) -> jax.Array:
    """The raw range test: losses ``[num_steps]`` while training ``params`` with ``tx``.

    ``tx`` carries the growing learning rate, e.g. ``jopt.adam(lr_table_schedule(lrs))``.
    ``batches`` has a leading axis of length ``num_steps`` (one batch per step) or is ``None``
    for ``loss_fn(params)``. The run is one ``lax.scan`` under one ``jax.jit``.
    """
    xs = jnp.arange(num_steps) if batches is None else batches

    def run(params: Any, xs: Any) -> jax.Array:
        def body(carry, batch):
            p, s = carry
            if batches is None:
                loss, g = jax.value_and_grad(loss_fn)(p)
            else:
                loss, g = jax.value_and_grad(loss_fn)(p, batch)
            return update_and_apply(tx, g, s, p, value=loss), loss

        _, losses = jax.lax.scan(body, (params, tx.init(params)), xs)
        return losses

    return jax.jit(run)(params, xs)


def _ema(x: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average (causal)."""
    out, avg = np.empty_like(x), 0.0
    for t, v in enumerate(x):
        avg = beta * avg + (1 - beta) * v
        out[t] = avg / (1 - beta ** (t + 1))
    return out


def analyse_lr_curve(
    lrs: Any, losses: Any, *, beta: float = 0.9, diverge: float = 4.0
) -> LRFindResult:
    """Cut at divergence, smooth and pick the suggestion (see the module docstring).

    Divergence is detected on the causal EMA (as it would be online). The curve used for
    the suggestion is smoothed forwards *and* backwards (the mean of a causal and an
    anti-causal EMA), which has no lag: a causal EMA alone shifts the whole curve to larger
    learning rates. The first 10 % of the steps are not candidates, since the smoothed slope
    there rests on a handful of noisy losses.
    """
    lrs = np.asarray(lrs, np.float64)
    losses = np.asarray(losses, np.float64)
    if lrs.shape != losses.shape or lrs.ndim != 1 or lrs.size < 5:
        raise JoptError("lr and loss curves must be 1-D, of equal length >= 5")
    if not 0.0 <= beta < 1.0:
        raise JoptError(f"beta must be in [0, 1), got {beta!r}")
    finite = np.isfinite(losses)
    stop = int(np.argmin(finite)) if not finite.all() else losses.size
    causal = _ema(losses[:stop], beta)
    running_min = np.minimum.accumulate(causal)
    blown = np.nonzero(causal[1:] > diverge * running_min[:-1])[0]
    if blown.size:
        stop = int(blown[0]) + 2  # keep the first diverged point for the plot
    diverged_at = stop if stop < losses.size else None
    if stop < 5:
        raise JoptError("the loss diverged within the first steps; lower min_lr")
    lrs, losses = lrs[:stop], losses[:stop]
    smoothed = 0.5 * (_ema(losses, beta) + _ema(losses[::-1], beta)[::-1])
    i_min = int(np.argmin(smoothed))
    slope = np.gradient(smoothed, np.log(lrs))
    skip = min(max(1, stop // 10), i_min)
    i_steep = skip + int(np.argmin(slope[skip : i_min + 1]))
    return LRFindResult(lrs, losses, smoothed, float(lrs[i_steep]), float(lrs[i_min]), diverged_at)


def lr_find(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    make_tx: Callable[[Any], Any],
    batches: Any = None,
    *,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    num_steps: int = 100,
    beta: float = 0.9,
    diverge: float = 4.0,
) -> LRFindResult:
    """Run the learning-rate range test and suggest a learning rate.

    Args:
        loss_fn: ``loss_fn(params, batch)`` (or ``loss_fn(params)`` with ``batches=None``).
        params: starting parameters.
        make_tx: ``schedule -> GradientTransformation``, e.g. ``lambda lr: jopt.sgd(lr, 0.9)``.
        batches: a pytree with a leading axis of length ``num_steps``: one batch per step.
        min_lr, max_lr, num_steps: the exponential sweep.
        beta: EMA factor for smoothing; ``diverge``: stop when the smoothed loss exceeds
            ``diverge ×`` its minimum so far.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> r = jopt.numerics.lr_find(lambda p: jnp.sum(p**2), jnp.ones(4),
        ...                           lambda lr: jopt.sgd(lr), min_lr=1e-4, max_lr=10.0)
        >>> 1e-3 < r.suggestion < 1.0
        True
    """
    lrs = exponential_lrs(min_lr, max_lr, num_steps)
    if batches is not None:
        lead = {np.shape(x)[0] for x in jax.tree.leaves(batches)}
        if lead != {num_steps}:
            raise JoptError(f"batches need a leading axis of num_steps={num_steps}, got {lead}")
    losses = lr_find_run(loss_fn, params, make_tx(lr_table_schedule(lrs)), batches, num_steps)
    return analyse_lr_curve(lrs, np.asarray(losses), beta=beta, diverge=diverge)


def plot_lr_find(result: LRFindResult, file: str | None = None, *, title: str | None = None) -> Any:
    """Loss against learning rate (log x), raw and smoothed, with the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed")
    i = int(np.argmin(np.abs(result.lrs - result.suggestion)))
    ax.plot(
        result.suggestion,
        result.smoothed[i],
        "o",
        color="C3",
        ms=8,
        label=f"suggestion {result.suggestion:.2e}",
    )
    ax.axvline(
        result.min_loss_lr, color="0.5", ls=":", lw=1, label=f"minimum {result.min_loss_lr:.2e}"
    )
    ax.set_xscale("log")
    lo = min(np.min(result.smoothed), np.min(result.losses))
    hi = np.max(result.smoothed[: max(i, 1) + 1])
    ax.set_ylim(lo - 0.1 * (hi - lo + 1e-12), hi + 0.3 * (hi - lo + 1e-12))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.legend(fontsize=8)
    if file is not None:
        fig.savefig(file, dpi=120, bbox_inches="tight")
    return fig


def write_lr_find(result: LRFindResult, run_dir: str, *, title: str | None = None) -> str:
    """Write ``lr_find.json`` and ``plots/lr_find.png`` into ``run_dir``; return the JSON path."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.join(run_dir, "plots"), exist_ok=True)
    fig = plot_lr_find(result, os.path.join(run_dir, "plots", "lr_find.png"), title=title)
    plt.close(fig)
    record = {
        "suggestion": result.suggestion,
        "min_loss_lr": result.min_loss_lr,
        "diverged_at": result.diverged_at,
        "lrs": [float(x) for x in result.lrs],
        "losses": [float(x) for x in result.losses],
        "smoothed": [float(x) for x in result.smoothed],
    }
    path = os.path.join(run_dir, "lr_find.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)  # atomic, as every run-dir file
    return path
