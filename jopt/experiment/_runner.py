"""``run(config) -> run_dir``: one experiment, start to finish, and ``resume(run_dir)``."""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np

from jopt.core.errors import JoptError
from jopt.distributed import list_checkpoints
from jopt.experiment import _artifacts as art
from jopt.experiment._build import setup as make_setup
from jopt.experiment._load import dump_config, load_config
from jopt.experiment._plots import plot_run
from jopt.experiment._problem import is_problem, run_problem_config
from jopt.experiment._schema import Config
from jopt.experiment._trainer import GroupTrainer, Member, start_distributed
from jopt.experiment._validate import validate_config


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
    final = {k: v for k, v in rows[-1].items() if k not in art.TIMING_FIELDS} if rows else {}
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
    return {
        "name": member.config.name,
        "status": status,
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
    }


def finish(
    member: Member, trainer: GroupTrainer, wall_s: float, status: str, plots: bool = True
) -> dict:
    """Write ``summary.json`` and the plots of one member; return the summary."""
    summary = summarize(member, trainer, wall_s, status)
    if member.run_dir is not None and member.writes:
        art.write_json(os.path.join(member.run_dir, "summary.json"), summary)
        if plots and member.config.output.plots and member.rows:
            plot_run(member.rows, os.path.join(member.run_dir, "plots"), member.config.name)
    return summary


def _problem_guard(config: Config) -> None:
    if is_problem(config):
        raise JoptError(
            f"problem {config.problem.name!r} is a numerics test problem; "
            "run it with jopt run (a sweep needs a model and a data set)"
        )


def run(
    config: Config,
    *,
    progress: bool | None = None,
    stop_after: int | None = None,
    quiet: bool = True,
) -> str:
    """Train ``config`` and write its run directory; return the directory's path.

    Everything that can be checked is checked before the directory is created, so a bad
    config leaves nothing behind. ``stop_after`` ends after that many epochs with a
    checkpoint (continue with :func:`resume`).
    """
    validate_config(config)
    if is_problem(config):
        return run_problem_config(config, quiet)
    t0 = time.perf_counter()
    parallel = start_distributed(config)  # before any other JAX work
    st = make_setup(config)  # loads data; raises JoptError for bad sizes before any write
    member = Member(config, writes=_writes(parallel))
    progress = config.output.progress if progress is None else progress
    trainer = GroupTrainer([member], st, progress=progress and member.writes, parallel=parallel)
    member.run_dir = _make_run_dir(config, parallel)
    if member.writes:
        art.atomic_write(os.path.join(member.run_dir, "config.yaml"), dump_config(config))
    return _train(trainer, member, t0, 0, stop_after, quiet)


def _writes(parallel: Any) -> bool:
    """Whether this process writes the run's files: always, except in processes other than 0
    of a multi-process job."""
    return parallel is None or parallel.is_main


def _make_run_dir(config: Config, parallel: Any) -> str:
    """A fresh run directory; in a multi-process job, the same one in every process.

    Checkpoint saves are collective (every process writes its own shards into one directory),
    so process 0 creates the directory and sends its path to the others with
    ``multihost_utils.broadcast_one_to_all`` (the path must be on a filesystem all processes
    see). A single process draws its own name as before.
    """
    if parallel is None or jax.process_count() == 1:
        return art.make_run_dir(config.output.runs_dir, config.name)
    from jax.experimental import multihost_utils

    path = art.make_run_dir(config.output.runs_dir, config.name) if parallel.is_main else ""
    raw = os.fsencode(os.path.abspath(path) if path else "")
    if len(raw) > _PATH_BYTES:
        raise JoptError(f"output.runs_dir path too long for a multi-process run: {path}")
    buf = np.zeros(_PATH_BYTES, np.uint8)
    buf[: len(raw)] = np.frombuffer(raw, np.uint8)
    got = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    path = os.fsdecode(got.tobytes().rstrip(b"\0"))
    os.makedirs(path, exist_ok=True)  # a no-op on a shared filesystem
    return path


_PATH_BYTES = 4096  # the broadcast buffer for the run directory's path (Linux PATH_MAX)


def _train(
    trainer: GroupTrainer,
    member: Member,
    t0: float,
    start: int,
    stop_after: int | None,
    quiet: bool,
) -> str:
    status = "running"
    try:
        trainer.run(start_epoch=start, stop_after=stop_after)
        status = (
            "stopped"
            if member.last_epoch < trainer.setup.epochs and not member.stopped_early
            else "completed"
        )
        if status == "completed":
            trainer.save_final()
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if member.final_state is None:
            member.final_state = trainer.state
        summary = finish(member, trainer, time.perf_counter() - t0, status)
    if not quiet and member.writes:
        print(format_summary(summary, member.run_dir))
    return member.run_dir


def resume(
    run_dir: str, *, progress: bool | None = None, stop_after: int | None = None, quiet: bool = True
) -> str:
    """Continue a stopped run from its latest checkpoint, in the same directory.

    The restored state holds the parameters, optimizer state, step and PRNG key, so the
    continued run ends with the same parameters as an uninterrupted one (bit for bit on CPU).
    """
    art.check_run_dir(run_dir)
    config = load_config(os.path.join(run_dir, "config.yaml"))
    found = list_checkpoints(run_dir)
    if not found:
        raise JoptError(
            f"{run_dir} has no checkpoint to resume from "
            "(set train.checkpoint_every to checkpoint during training)"
        )
    epoch, path = found[-1]
    book = art.read_json(path + ".json")
    parallel = start_distributed(config)
    st = make_setup(config)
    if epoch >= st.epochs:
        raise JoptError(f"{run_dir} already finished all {st.epochs} epochs")
    t0 = time.perf_counter()
    member = Member(
        config,
        run_dir=run_dir,
        rows=art.read_jsonl(os.path.join(run_dir, "metrics.jsonl")),
        writes=_writes(parallel),
    )
    progress = config.output.progress if progress is None else progress
    trainer = GroupTrainer([member], st, progress=progress and member.writes, parallel=parallel)
    trainer.restore(
        path,
        {
            k: book[k]
            for k in (
                "last_epoch",
                "best_value",
                "best_epoch",
                "bad_evals",
                "stopped_early",
                "active",
            )
        },
    )
    trainer.train_s = float(book.get("train_s", 0.0))
    return _train(trainer, member, t0, epoch, stop_after, quiet)


def format_summary(summary: dict, run_dir: str | None) -> str:
    """The results block printed at the end of ``jopt run``."""

    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

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
        if k in summary["final"]
    ]
    width = max((len(k) for k in keys), default=10)
    lines.append(f"  {'metric':<{width}}  {'final':>8}  {'best':>8}")
    for k in keys:
        lines.append(
            f"  {k:<{width}}  {fmt(summary['final'].get(k)):>8}  {fmt(summary['best'].get(k)):>8}"
        )
    lines.append(
        f"  best epoch {summary['best_epoch']} by {summary['monitor']}; "
        f"compile {summary['compile_time']:.2f} s, train {summary['train_time']:.2f} s, "
        f"{summary['steps_per_s'] or 0:.0f} steps/s, wall {summary['wall_time']:.1f} s"
    )
    if run_dir:
        lines.append(f"  results in {run_dir}")
    return "\n".join(lines)
