"""A run's results: the content of ``summary.json`` (:func:`summarize`), writing it with the
plots (:func:`finish`) and the block ``jopt run`` prints at the end (:func:`format_summary`)."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jopt.experiment import _artifacts as art
from jopt.experiment._member import Member
from jopt.experiment._plots import plot_run
from jopt.experiment._trainer import GroupTrainer


def weight_sparsity(params: Any, threshold: float = 1e-3) -> float:
    """Fraction of weight-matrix entries (ndim >= 2) with ``|w| < threshold``."""
    leaves = [np.asarray(p) for p in jax.tree.leaves(params) if np.ndim(p) >= 2]
    total = sum(p.size for p in leaves)
    return float(sum(int(np.sum(np.abs(p) < threshold)) for p in leaves) / max(total, 1))


def summarize(member: Member, trainer: GroupTrainer, wall_s: float, status: str) -> dict:
    """The content of ``summary.json``."""
    rows = member.rows
    es = member.config.regularization.early_stopping
    restored = es.patience > 0 and es.restore_best
    # a non-finite value is left out (a diverged run says so in "status" and "diverged")
    final = (
        {k: v for k, v in rows[-1].items() if k not in art.TIMING_FIELDS and v is not None}
        if rows
        else {}
    )
    best_row = next((r for r in rows if r["epoch"] == member.best_epoch), None)
    best = {k: v for k, v in best_row.items() if k not in art.TIMING_FIELDS} if best_row else {}
    steps = member.last_epoch * trainer.setup.steps_per_epoch
    state = member.final_state
    n_params = sparsity = None
    if state is not None:
        try:  # after Ctrl-C mid-epoch the last state may have been donated (deleted)
            n_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
            sparsity = weight_sparsity(state.params)
        except RuntimeError:
            pass
    if member.diverged is not None:
        status = "diverged"
    return {
        "name": member.config.name,
        "status": status,
        "diverged": member.diverged,
        "seed": member.config.seed,
        "epochs_run": member.last_epoch,
        "steps": steps,
        "stopped_early": member.stopped_early,
        "monitor": trainer.metric,
        "best_epoch": member.best_epoch,
        # the returned parameters are the best epoch's when early stopping restores them
        "restored_best": bool(restored and member.best_epoch is not None),
        "final": final,
        "best": best,
        "num_params": n_params,
        "weight_sparsity": sparsity,
        "wall_time": wall_s,
        "compile_time": trainer.compile_s,
        "train_time": trainer.train_s,
        "eval_time": trainer.eval_s,
        "steps_per_s": steps * trainer.K / trainer.train_s if trainer.train_s else None,
        "group_size": trainer.K,
        # how the optimizer ran (optimizer.execution resolved: packed, per_leaf or fused)
        "execution": trainer.program.execution,
        "execution_note": trainer.program.execution_note,
        # train.precision resolved: policy, matmul precision, parameter/compute/state dtypes
        "precision": trainer.program.precision.describe(),
    }


def finish(
    member: Member, trainer: GroupTrainer, wall_s: float, status: str, plots: bool = True
) -> dict:
    """Write ``summary.json`` and the plots of one member; return the summary."""
    summary = summarize(member, trainer, wall_s, status)
    if member.tracker is not None:
        member.tracker.close(summary)
    if member.run_dir is not None and member.writes:
        art.write_json(os.path.join(member.run_dir, "summary.json"), summary)
        if plots and member.config.output.plots and member.rows:
            plot_run(
                member.rows,
                os.path.join(member.run_dir, "plots"),
                member.config.name,
                diverged=member.diverged,
            )
    return summary


def format_summary(summary: dict, run_dir: str | None) -> str:
    """The results block printed at the end of ``jopt run``."""

    missing = "diverged" if summary["status"] == "diverged" else "–"

    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else missing if v is None else str(v)

    lines = [
        f"run {summary['name']}: {summary['status']} after {summary['epochs_run']} epochs "
        f"({summary['steps']} steps)"
    ]
    keys = [
        k
        for k in (
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "test_loss",
            "test_accuracy",
        )
        if k in summary["final"] or k in summary["best"]
    ]
    width = max((len(k) for k in keys), default=10)
    lines.append(f"  {'metric':<{width}}  {'final':>8}  {'at best':>8}")
    for k in keys:
        lines.append(
            f"  {k:<{width}}  {fmt(summary['final'].get(k)):>8}  {fmt(summary['best'].get(k)):>8}"
        )
    lines.append(
        f"  'at best' = value at best epoch {summary['best_epoch']} (by {summary['monitor']}); "
        f"compile {summary['compile_time']:.2f} s, train {summary['train_time']:.2f} s, "
        f"{summary['steps_per_s'] or 0:.0f} steps/s, wall {summary['wall_time']:.1f} s"
    )
    if run_dir:
        lines.append(f"  results in {run_dir}")
    return "\n".join(lines)
