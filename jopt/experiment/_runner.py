"""``run(config) -> run_dir``: one experiment, start to finish, and ``resume(run_dir)``."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import jax
import numpy as np

from jopt.core.errors import JoptError
from jopt.distributed import list_checkpoints
from jopt.experiment import _artifacts as art
from jopt.experiment import _resume as rs
from jopt.experiment._build import setup as make_setup
from jopt.experiment._load import dump_config, load_config
from jopt.experiment._member import BOOKKEEPING, Member
from jopt.experiment._problem import is_problem, run_problem_config
from jopt.experiment._program import start_distributed
from jopt.experiment._schema import Config
from jopt.experiment._stream import steps_into_epoch
from jopt.experiment._summary import finish, format_summary
from jopt.experiment._tracker import open_tracker
from jopt.experiment._trainer import GroupTrainer
from jopt.experiment._validate import validate_config


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
    with rs.locked(member.run_dir, member.writes):
        if member.writes:
            art.atomic_write(os.path.join(member.run_dir, "config.yaml"), dump_config(config))
            rs.write_fingerprint(member.run_dir, config)
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
    if member.writes:  # a resumed run's events from after its checkpoint are dropped
        first = start * trainer.setup.steps_per_epoch + 1 if start else None
        member.tracker = open_tracker(member.config, member.run_dir, start_step=first)
    try:
        trainer.run(start_epoch=start, stop_after=stop_after)
        status = (
            "diverged"
            if member.diverged is not None
            else "stopped"
            if member.last_epoch < trainer.setup.epochs and not member.stopped_early
            else "completed"
        )
        if status in ("completed", "diverged"):
            trainer.save_final()
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if member.final_state is None:
            member.final_state = trainer.member_state(0)
        summary = finish(member, trainer, time.perf_counter() - t0, status)
    if not quiet and member.writes:
        print(format_summary(summary, member.run_dir))
        if member.diverged is not None:
            print(f"jopt run: {member.diverged['message']}", file=sys.stderr)
    return member.run_dir


def resume(
    run_dir: str,
    *,
    progress: bool | None = None,
    stop_after: int | None = None,
    quiet: bool = True,
    epochs: int | None = None,
) -> str:
    """Continue a stopped run from its newest good checkpoint, in the same directory.

    The restored state holds the parameters, optimizer state, step and PRNG key, so the
    continued run ends with the same parameters as an uninterrupted one (bit for bit on CPU).
    Before that it checks (``_resume``): the lock (no other process in the directory), the
    config's fingerprint (a changed training-relevant field is refused), each checkpoint
    from the newest (one that does not restore is skipped with a line saying why). ``epochs``
    extends the run (recorded in ``config.yaml`` and ``fingerprint.json``). A run whose
    training ended but whose summary or plots are missing is completed without training.
    """
    art.check_run_dir(run_dir)
    config = load_config(os.path.join(run_dir, "config.yaml"))
    parallel = start_distributed(config)
    writes = _writes(parallel)
    with rs.locked(run_dir, writes):
        if writes:
            rs.remove_orphans(run_dir)
        rs.verify(run_dir, config)
        old_config, old_epochs = config, config.train.epochs
        if epochs is not None:
            from jopt.experiment._load import replace_dotted

            config = replace_dotted(config, {"train.epochs": int(epochs)})
        found = list_checkpoints(run_dir)
        if not found:
            raise JoptError(
                f"{run_dir} has no checkpoint to resume from "
                "(set train.checkpoint_every to checkpoint during training)"
            )
        found = _precheck(run_dir, found)  # cheap checks first: no compile for a refusal
        book = art.read_json(found[-1][1] + ".json")
        ended = _check_extend(run_dir, book, epochs)
        last = found[-1][0]
        finished = epochs is None and (ended or last >= _epochs(config, book))
        if finished and rs.summary_complete(run_dir, config):
            raise JoptError(
                f"{run_dir} already ended ({_ended(book)})"
                if ended
                else f"{run_dir} already finished all {last} epochs (extend it with --epochs N)"
            )
        t0 = time.perf_counter()
        st = make_setup(config)
        if epochs is not None:  # before compiling: the newest checkpoint bounds the steps taken
            spe = st.steps_per_epoch
            done = found[-1][0] * spe + steps_into_epoch(book)  # a mid-epoch one: its steps
            rs.check_extension(old_config, int(epochs), done, spe)
        member = Member(
            config,
            run_dir=run_dir,
            rows=art.read_jsonl(os.path.join(run_dir, "metrics.jsonl")),
            writes=writes,
        )
        progress = config.output.progress if progress is None else progress
        trainer = GroupTrainer([member], st, progress=progress and writes, parallel=parallel)
        epoch, book = _restore_newest(trainer, run_dir, found, quiet)
        ended = _check_extend(run_dir, book, epochs)
        if epochs is None and (ended or epoch >= st.epochs):
            return _complete(trainer, member, t0, quiet)
        if epochs is not None and writes:
            rs.record_extension(run_dir, config, old_epochs, epoch)
        return _train(trainer, member, t0, epoch, stop_after, quiet)


def _epochs(config: Config, book: dict) -> int:
    """The run's epoch count without loading data (``train.steps`` needs steps per epoch: the
    checkpoint's ``steps_per_epoch`` when it recorded one)."""
    t = config.train
    spe = book.get("steps_per_epoch")
    if t.steps is None:
        return t.epochs
    return -(-t.steps // spe) if spe else 2**62  # unknown: decided after loading


def _precheck(run_dir: str, found: list) -> list:
    """The checkpoints that pass the cheap checks (bookkeeping file, orbax metadata); a line
    for each newer one that does not; one line naming all when none passes."""
    good, bad = [], []
    for epoch, path in found:
        why = rs.checkpoint_problem(path)
        if why is None:
            good.append((epoch, path))
        else:
            bad.append((epoch, path, why))
    if not good:
        listed = "; ".join(f"{os.path.basename(p)}: {w}" for _, p, w in bad)
        raise JoptError(f"no checkpoint of {run_dir} restores ({listed})")
    for epoch, path, why in bad:
        if epoch > good[-1][0]:
            print(
                f"jopt run --resume: skipped checkpoint {os.path.basename(path)}: {why}",
                file=sys.stderr,
            )
    return good


def _check_extend(run_dir: str, book: dict, epochs: int | None) -> bool:
    """Whether the checkpoint's bookkeeping says the run ended (diverged, stopped early,
    inactive); ``--epochs`` cannot extend such a run."""
    ended = book.get("diverged") or book.get("stopped_early") or not book.get("active", True)
    if epochs is not None and ended:
        raise JoptError(f"{run_dir} already ended ({_ended(book)}); --epochs cannot extend it")
    return bool(ended)


def _ended(book: dict) -> str:
    if book.get("diverged"):
        return "diverged: " + book["diverged"].get("message", "")
    return "stopped early"


def _restore_newest(
    trainer: GroupTrainer, run_dir: str, found: list, quiet: bool
) -> tuple[int, dict]:
    """Restore the newest checkpoint that verifies; say which ones were skipped and why."""
    problems = []
    for epoch, path in reversed(found):
        why = rs.checkpoint_problem(path)
        if why is None:
            book = art.read_json(path + ".json")
            try:
                trainer.restore(path, {k: book[k] for k in BOOKKEEPING if k in book})
            except Exception as e:  # a truncated or corrupt array file
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                why = f"it does not restore ({type(e).__name__}: {first})"
            else:
                trainer.train_s = float(book.get("train_s", 0.0))
                return epoch, book
        problems.append(f"{os.path.basename(path)}: {why}")
        print(
            f"jopt run --resume: skipped checkpoint {os.path.basename(path)}: {why}",
            file=sys.stderr,
        )
    raise JoptError(f"no checkpoint of {run_dir} restores ({'; '.join(problems)})")


def _complete(trainer: GroupTrainer, member: Member, t0: float, quiet: bool) -> str:
    """Write the summary and plots of a run whose training ended (the data-loss window: a
    process killed after its last checkpoint, before ``summary.json``)."""
    member.final_state = trainer.member_state(0)
    status = "completed" if member.diverged is None else "diverged"
    summary = finish(member, trainer, time.perf_counter() - t0, status)
    if member.writes:
        print(
            f"jopt run --resume: {member.run_dir} had finished training; wrote its summary"
            + (" and plots" if member.config.output.plots else ""),
            file=sys.stderr,
        )
        if not quiet:
            print(format_summary(summary, member.run_dir))
    return member.run_dir
