"""The training loop behind ``jopt run`` and ``jopt sweep``.

A *group* is K runs that differ only in values held in arrays: the seed (the PRNG key in the
train state) and hyperparameters held in the optimizer state (``jopt.set_hparams``). Their
states are stacked on a leading axis and the training engine's pure epoch function is mapped
over it (``_program.over_members``), so the whole group is one compiled program, compiled
once. A single run is a group of one.

The host loop (``jopt.train.run_epochs``) runs once per epoch; :class:`GroupTrainer` gives it
the callback that records each member's row (``_member``: early stopping, divergence),
writes ``metrics.jsonl`` atomically and saves checkpoints when due (``_checkpoints``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError
from jopt.data import ShardedData
from jopt.distributed import step_checkpoint_path
from jopt.experiment import _artifacts as art
from jopt.experiment._build import Setup, lr_name, vmappable_values
from jopt.experiment._checkpoints import (
    check_precision,
    checkpoint_due,
    restore_stacked,
    save_member,
)
from jopt.experiment._member import (
    Member,
    divergence,
    early_stopping,
    finite_float,
    monitor_metric,
    restores_best,
)
from jopt.experiment._plateau import plateau_observer, plateau_scales
from jopt.experiment._policy import EVAL_PARAMS_OPTIMIZERS
from jopt.experiment._program import (
    build_program,
    compile_group,
    eval_params_fn,
    init_group,
    member_slice,
    place_group,
)
from jopt.experiment._sharpness import sharpness_fn, sharpness_row
from jopt.experiment._stream import ShardedRun
from jopt.train import run_epochs

__all__ = ["GroupTrainer", "Member"]


class GroupTrainer:
    """Train K structurally identical configs as one program over a stacked member axis."""

    def __init__(
        self,
        members: list[Member],
        setup: Setup,
        *,
        progress: bool = False,
        desc: str = "",
        parallel: Any = None,
    ):
        """Build, initialise, place and compile (``_program``) the group's program.

        ``parallel``: a ``jopt.distributed.DataParallel`` from ``start_distributed`` (single
        runs only); the model, optimizer, state and data are placed through it."""
        self.members, self.setup, self.K = members, setup, len(members)
        self.progress, self.desc, self.parallel = progress, desc, parallel
        base = self.base = members[0].config
        self.program = build_program(base, setup, self.K, parallel)
        self.tx, self.mult = self.program.tx, self.program.mult
        self.stream = None
        if isinstance(setup.data, ShardedData):  # read in batches from its shards (_stream)
            self.stream = ShardedRun(self.program, setup, base, parallel)
            self.x = self.y = None
            self.splits = self.stream.splits
        else:
            self.x, self.y, self.splits = _arrays(base, setup.data)
        es = base.regularization.early_stopping
        if es.patience > 0 and es.metric.startswith("val") and "val" not in self.splits:
            raise JoptError(f"early stopping on {es.metric} needs data.val_fraction > 0")
        self.metric = monitor_metric(base, "val" in self.splits)
        self.stopping = early_stopping(base, self.metric)
        self.observe = None
        if base.schedule.name == "plateau":
            self.observe = plateau_observer(base, setup.data.task, self.splits, self.K)
        self.member_eval_params = None
        if base.optimizer.name in EVAL_PARAMS_OPTIMIZERS:
            self.member_eval_params = jax.jit(eval_params_fn(base))

        sample = jnp.asarray(setup.data.sample) if self.stream else self.x[:1]
        self.state, self.placed = init_group(
            self.program, [m.config for m in members], sample, parallel
        )
        t0 = time.perf_counter()
        if self.stream is not None:
            if parallel is not None and not self.placed:
                self.state = parallel.shard_state(self.state)
            self.epoch, self.evaluate = self.stream.compile(self.state, self._step_checkpoint)
        else:
            self.state, self.x, self.y, self.splits = place_group(
                self.state, self.x, self.y, self.splits, parallel, self.placed
            )
            self.epoch, self.evaluate = compile_group(
                self.program, self.state, self.x, self.y, self.splits, parallel
            )
        self.compile_s = time.perf_counter() - t0
        self.sharpness_fn = None
        self.train_s = 0.0
        self.eval_s = 0.0

    def member(self, tree: Any, k: int) -> Any:
        """Member ``k``'s slice of a group tree (state, metrics)."""
        return member_slice(tree, k)

    def member_state(self, k: int) -> Any:
        """Member ``k``'s current train state; None when the group's state was donated to an
        epoch that did not return (Ctrl-C mid-epoch)."""
        try:
            return self.member(self.state, k)
        except RuntimeError:  # a deleted (donated) array
            return None

    def eval_vars(self, st: Any) -> tuple[Any, Any]:
        """One member's evaluated ``(params, model_state)`` (schedule-free: its ``x``)."""
        params = st.params
        if self.member_eval_params is not None:
            params = self.member_eval_params(st.params, st.opt_state)
        return params, st.model_state

    # -- resume ------------------------------------------------------------------------------
    def restore(self, path: str, bookkeeping: dict) -> None:
        """Continue a single run from a checkpoint written by :meth:`_checkpoint`.

        A checkpoint records the run's precision (``train.precision`` resolved); one written
        under another precision is refused (its arrays have other dtypes and meanings)."""
        m = self.members[0]
        check_precision(path, self.program.precision.describe())
        self.state, best = restore_stacked(path, self.state)
        for k, v in bookkeeping.items():
            setattr(m, k, v)
        if m.best_epoch is not None and restores_best(self.base):
            m.best_vars = jax.device_get(best)
        m.rows = [r for r in m.rows if r["epoch"] <= m.last_epoch]
        if self.stream is not None:  # the data position (mid-epoch: that epoch's steps so far)
            self.stream.resume(m.last_epoch, art.read_json(path + ".json"))

    # -- the loop ----------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return float(self.mult(jnp.asarray(step, jnp.int32))) if self.mult is not None else 1.0

    def run(self, start_epoch: int = 0, stop_after: int | None = None) -> None:
        """Train from ``start_epoch`` to the configured number of epochs.

        ``stop_after`` ends the session after that many epochs (as if the process were killed
        after a checkpoint), for tests and for splitting long runs.
        """
        from tqdm.auto import tqdm

        cfg = self.base
        epochs = self.setup.epochs
        bar = tqdm(
            total=epochs,
            initial=start_epoch,
            unit="epoch",
            disable=not self.progress,
            desc=self.desc or cfg.name,
            leave=False,
            dynamic_ncols=True,
        )
        session = {"done": 0, "paused": False}

        def on_epoch(log, state) -> bool:
            self.state = state
            self.train_s += log.epoch_time
            self.eval_s += log.eval_time
            ev = {f"{split}_{k}": v for split, r in log.evals.items() for k, v in r.items()}
            self._record(log.epoch, log.metrics, ev, log.epoch_time, log.elapsed, log.evaluated)
            session["done"] += 1
            bar.update(1)
            bar.set_postfix(_postfix([mb.rows[-1] for mb in self.members if mb.rows]))
            if not any(mb.active for mb in self.members):
                return True
            if stop_after is not None and session["done"] >= stop_after and log.epoch < epochs:
                if not self._due(log.epoch, force=True):
                    raise JoptError("stop_after needs output.checkpoints: true")
                session["paused"] = True
                return True
            return False

        def evaluate(state):
            return self.evaluate(state.params, state.model_state, state.opt_state, self.splits)

        try:
            self.state = run_epochs(
                self.epoch,
                self.state,
                (self.x, self.y),
                epochs=epochs,
                start_epoch=start_epoch,
                on_epoch=on_epoch,
                evaluate=evaluate if self.splits else None,
                eval_every=cfg.train.eval_every,
                check_nonfinite=False,  # per member, in _record (train.nonfinite)
                after_eval=self.observe,  # schedule: plateau
            )
        finally:
            bar.close()
        if session["paused"]:
            return
        for k, mb in enumerate(self.members):
            if mb.final_state is None:
                mb.final_state = self.member(self.state, k)
            if mb.best_vars is not None and restores_best(cfg):
                params, ms = mb.best_vars
                mb.final_state = mb.final_state._replace(params=params, model_state=ms)

    def _record(
        self, epoch: int, m: dict, ev: dict, dt: float, elapsed: float, evaluated: bool
    ) -> None:
        """Each active member's row of ``epoch``; then early stopping, divergence,
        ``metrics.jsonl`` and the checkpoints due."""
        cfg = self.base
        spe = self.setup.steps_per_epoch
        step = epoch * spe
        opt_logs = self._opt_logs(self.state.opt_state)
        scales = plateau_scales(self.state.opt_state, self.K)
        sharp = self._sharpness_due(epoch)
        for k, mb in enumerate(self.members):
            if not mb.active:
                continue
            row: dict[str, Any] = {"epoch": epoch, "step": step}
            for key in ("train_loss", "train_accuracy", "penalty", "grad_norm"):
                if key in m:
                    row[key] = finite_float(m[key][k])
            for key, v in ev.items():
                row[key] = finite_float(v[k])
            row.update(opt_logs[k])
            lr = vmappable_values(mb.config).get(lr_name(cfg))
            # the next step's: schedule multiplier times the plateau's scale
            row["learning_rate"] = lr * self.lr_at(step) * scales[k] if lr is not None else None
            if sharp:
                st = self.member(self.state, k)
                row.update(
                    sharpness_row(
                        self.sharpness_fn, st, mb.config.seed, epoch, row["learning_rate"]
                    )
                )
            row["epoch_time"] = dt
            row["time"] = elapsed
            mb.rows.append(row)
            if mb.tracker is not None:
                mb.tracker.log_row(row)
            mb.last_epoch = epoch
            mb.diverged = divergence(
                mb,
                row,
                epoch=epoch,
                steps_per_epoch=spe,
                finite=m["step_finite"][k],
                loss=m["step_loss"][k],
                opt_state=self.member(self.state.opt_state, k),
                metric=self.metric,
                monitored=evaluated,
            )
            if mb.diverged is not None:
                mb.active = False
                mb.final_state = jax.device_get(self.member(self.state, k))
            elif evaluated and self.metric in row:
                self._early_stopping(mb, k, epoch, row[self.metric])
            if mb.run_dir is not None and mb.writes:
                art.write_jsonl(os.path.join(mb.run_dir, "metrics.jsonl"), mb.rows)
        self._due(epoch)

    def _early_stopping(self, mb: Member, k: int, epoch: int, value: float | None) -> None:
        improved, mb.best_value, mb.best_epoch, stop = self.stopping.update(
            epoch, value, mb.best_value, mb.best_epoch
        )
        mb.bad_evals = 0 if improved else mb.bad_evals + 1
        if improved and restores_best(self.base):
            mb.best_vars = jax.device_get(self.eval_vars(self.member(self.state, k)))
        if stop and self.base.regularization.early_stopping.patience > 0:
            mb.active, mb.stopped_early = False, True
            mb.final_state = jax.device_get(self.member(self.state, k))

    def _opt_logs(self, opt_state) -> list[dict]:
        """Each member's logged optimizer values (``jopt.train.optimizer_logs``)."""
        from jopt.train import optimizer_logs

        out = {k: v for k, v in optimizer_logs(opt_state).items() if v.ndim == 1}  # scalars
        return [{k: finite_float(v[i]) for k, v in out.items()} for i in range(self.K)]

    def _sharpness_due(self, epoch: int) -> bool:
        every = self.base.diagnostics.sharpness_every
        if not every or epoch % every:
            return False
        if self.sharpness_fn is None:
            self.sharpness_fn = sharpness_fn(self.base, self.setup)
        return True

    # -- checkpoints -------------------------------------------------------------------------
    def _due(self, epoch: int, force: bool = False) -> bool:
        """Write checkpoints when the cadence says so (or ``force``); False if disabled."""
        due = checkpoint_due(self.base, epoch, force)
        if due is None:
            return False
        if due:
            for k, mb in enumerate(self.members):
                if mb.run_dir is not None and mb.active:
                    self._checkpoint(mb, epoch, self.member(self.state, k))
        return True

    def _checkpoint(self, mb: Member, epoch: int, state, where: Any = None) -> None:
        """Save member ``mb``'s (unstacked) ``state`` as the checkpoint of ``epoch``."""
        record = {
            "train_s": self.train_s,
            "steps_per_epoch": self.setup.steps_per_epoch,
            "precision": self.program.precision.describe(),
        }
        if self.stream is not None:  # where the data stands (Grain's iterator state)
            record["stream"] = self.stream.position()
        save_member(mb, epoch, state, record, where)

    def _step_checkpoint(self, state, epochs_done: int, step: int) -> None:
        """A mid-epoch checkpoint of a streamed run (``train.checkpoint_every_steps``)."""
        mb = self.members[0]
        if mb.run_dir is not None and mb.active and self.base.output.checkpoints:
            where = step_checkpoint_path(mb.run_dir, epochs_done, step)
            self._checkpoint(mb, epochs_done, state, where)

    def save_final(self) -> None:
        for mb in self.members:
            if mb.run_dir is not None and self.base.output.checkpoints:
                st = mb.final_state
                self._checkpoint(mb, mb.last_epoch, jax.tree.map(jnp.asarray, st))


def _arrays(config: Any, data: Any) -> tuple[Any, Any, dict]:
    """The training arrays and the evaluation splits (``train_eval`` with
    ``train.eval_train``; ``val`` and ``test`` when they hold examples)."""
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    splits = {"train_eval": (x, y)} if config.train.eval_train else {}
    for split in ("val", "test"):
        xs, ys = data.split(split)
        if len(ys):
            splits[split] = (jnp.asarray(xs), jnp.asarray(ys))
    return x, y, splits


def _postfix(last: list[dict]) -> dict:
    """The progress bar's figures: the lowest training loss and the highest validation
    accuracy among the members' newest rows."""
    out = {}
    for key, pick in (("train_loss", min), ("val_accuracy", max)):
        values = [r[key] for r in last if r.get(key) is not None]
        if values:
            out[key] = f"{pick(values):.4g}"
    return out
