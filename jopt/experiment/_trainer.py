"""The training loop behind ``jopt run`` and ``jopt sweep``.

A *group* is K runs that differ only in values held in arrays: the seed (the PRNG key in the
train state) and hyperparameters held in the optimizer state (``jopt.set_hparams``). Their
states are stacked on a leading axis and the training engine's pure epoch function is
``jax.vmap``-ed over them, so the whole group is one compiled program, compiled once. A group
of one is a plain run (no vmap).

The host loop runs once per epoch: evaluation, logging, early stopping, checkpoints and the
progress bar. Each epoch's record is written to the member's ``metrics.jsonl`` atomically.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.distributed import epoch_checkpoint_path, restore_checkpoint, save_checkpoint
from jopt.experiment import _artifacts as art
from jopt.experiment._build import Setup, lr_name, vmappable_values
from jopt.experiment._policy import EVAL_PARAMS_OPTIMIZERS, plateau_value
from jopt.experiment._program import (
    build_program,
    compile_group,
    eval_params_fn,
    init_group,
    place_group,
)
from jopt.experiment._schema import Config
from jopt.train import run_epochs


@dataclasses.dataclass
class Member:
    """One run of a group and its bookkeeping (JSON-serialisable except ``best_vars``)."""

    config: Config
    run_dir: str | None = None
    rows: list[dict] = dataclasses.field(default_factory=list)
    active: bool = True
    best_value: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0  # evaluations since the best one (informational; patience counts epochs)
    stopped_early: bool = False
    last_epoch: int = 0
    best_vars: Any = None  # host copy of (params, model_state) at the best epoch
    final_state: Any = None
    # train.nonfinite: where the run diverged ({epoch, step, quantity, ...}) and the run of
    # consecutive non-finite steps carried from the previous epoch
    diverged: dict | None = None
    skip_run: int = 0
    # False in processes other than 0 of a multi-process job: they train and join the
    # (collective) checkpoint saves, but process 0 alone writes logs and summaries.
    writes: bool = True
    tracker: Any = None  # a TensorBoardTracker when output.tensorboard (this process writes)

    def bookkeeping(self) -> dict:
        return {
            "last_epoch": self.last_epoch,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals,
            "stopped_early": self.stopped_early,
            "active": self.active,
            "diverged": self.diverged,
            "skip_run": self.skip_run,
        }


def _take(tree: Any, k: int) -> Any:
    return jax.tree.map(lambda x: x[k], tree)


def monitor_metric(config: Config, has_val: bool) -> str:
    """The metric that picks the best epoch: early stopping's, else validation loss."""
    es = config.regularization.early_stopping
    if es.patience > 0:
        return es.metric
    return "val_loss" if has_val else "train_loss"


def early_stopping(config: Config, metric: str) -> Any:
    """The run's ``jopt.train.EarlyStopping`` (the one rule ``fit`` uses too), monitoring
    ``metric``. Without patience it only tracks the best epoch: its patience is then longer
    than any run, so it never stops."""
    from jopt.train import EarlyStopping

    es = config.regularization.early_stopping
    return EarlyStopping(
        metric=metric,
        patience=es.patience if es.patience > 0 else 2**62,
        mode=es.mode if es.patience > 0 else None,
        min_delta=es.min_delta,
        restore_best=es.restore_best,
    )


def _float(x: Any) -> float | None:
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def start_distributed(config: Config) -> Any:
    """``jopt.distributed.setup`` for the config's ``distributed`` section, or None when it is
    off. Call it before any other JAX work (it may start the multi-process runtime and ask for
    host devices)."""
    dist = config.distributed
    if dist.data == 1 and not dist.coordinator_address:
        return None
    from jopt import distributed

    return distributed.setup(dataclasses.asdict(dist))


def _diverged(epoch: int, step: int, what: str, run: int, policy: str, limit: int) -> dict:
    """The summary's ``diverged`` record and its one line."""
    if what in ("gradient", "loss", "loss and gradient"):
        why = f"non-finite {what}"
        if policy == "skip":
            why += f" ({run} steps in a row, more than train.max_consecutive_skips={limit})"
    else:
        why = f"non-finite {what}"
    line = (
        f"diverged at step {step} (epoch {epoch}): {why}; lower the learning rate, clip "
        "gradients or check the data"
    )
    return {
        "epoch": epoch,
        "step": step,
        "quantity": what,
        "consecutive": run,
        "policy": policy,
        "message": line,
    }


class GroupTrainer:
    """Train K structurally identical configs as one (vmapped when K > 1) program."""

    def __init__(
        self,
        members: list[Member],
        setup: Setup,
        *,
        progress: bool = False,
        desc: str = "",
        parallel: Any = None,
    ):
        """``parallel``: a ``jopt.distributed.DataParallel`` from :func:`start_distributed`
        (single runs only); the model, optimizer, state and data are placed through it."""
        self.members, self.setup, self.K = members, setup, len(members)
        self.progress, self.desc = progress, desc
        base = members[0].config
        self.base = base
        data = setup.data
        self.total_steps = setup.epochs * setup.steps_per_epoch
        self.program = build_program(base, setup, self.K, parallel)
        self.tx, self.mult = self.program.tx, self.program.mult
        self.parallel = parallel
        self.x = jnp.asarray(data.x_train)
        self.y = jnp.asarray(data.y_train)
        self.splits = {}
        if base.train.eval_train:
            self.splits["train_eval"] = (self.x, self.y)
        for split in ("val", "test"):
            xs, ys = data.split(split)
            if len(ys):
                self.splits[split] = (jnp.asarray(xs), jnp.asarray(ys))
        if base.regularization.early_stopping.patience > 0:
            metric = base.regularization.early_stopping.metric
            if metric.startswith("val") and "val" not in self.splits:
                raise JoptError(f"early stopping on {metric} needs data.val_fraction > 0")
        self.metric = monitor_metric(base, "val" in self.splits)
        self.stopping = early_stopping(base, self.metric)
        self.observe = None
        if base.schedule.name == "plateau":
            self.observe = self._plateau_observer(base, data)
        self.member_eval_params = None
        if base.optimizer.name in EVAL_PARAMS_OPTIMIZERS:
            self.member_eval_params = jax.jit(eval_params_fn(base))

        self.state, self.placed = init_group(
            self.program, [m.config for m in members], self.x[:1], parallel
        )
        t0 = time.perf_counter()
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
        """Member ``k``'s slice of a group tree (the tree itself for a group of one, whose
        program is not vmapped)."""
        return tree if self.K == 1 else _take(tree, k)

    # -- schedule: plateau, evaluation parameters -----------------------------------------------
    def _plateau_observer(self, cfg: Config, data: Any) -> Any:
        """``(state, metrics, evals) -> state`` feeding ``schedule.metric`` to the plateau
        (``jopt.observe_plateau``; per member in a group), run after each evaluation."""
        from jopt.transforms import observe_plateau

        metric = cfg.schedule.metric
        if metric.endswith("_accuracy") and data.task != "classification":
            raise JoptError(f"schedule.metric {metric!r}: a {data.task} task has no accuracy")
        split, _, kind = metric.rpartition("_")
        if split != "train" and split not in self.splits:
            raise JoptError(f"schedule.metric {metric!r}: the run has no {split} split")

        def observe(opt_state, value):
            return observe_plateau(opt_state, value)

        if self.K > 1:
            observe = jax.vmap(observe)
        fn = jax.jit(observe, donate_argnums=0)

        def after_eval(state, metrics, evals):
            raw = metrics[metric] if split == "train" else evals[split][kind]
            value = plateau_value(metric, np.asarray(raw, np.float32))
            return state._replace(opt_state=fn(state.opt_state, jnp.asarray(value)))

        return after_eval

    def plateau_scales(self, opt_state: Any) -> list[float]:
        """Each member's current plateau scale (1.0 without a plateau schedule)."""
        from jopt.transforms import ReduceOnPlateauState

        found = [
            s
            for s in jax.tree.leaves(
                opt_state, is_leaf=lambda x: isinstance(x, ReduceOnPlateauState)
            )
            if isinstance(s, ReduceOnPlateauState)
        ]
        if not found:
            return [1.0] * self.K
        scale = np.asarray(jax.device_get(found[0].scale), np.float64).reshape(-1)
        return [float(scale[k if self.K > 1 else 0]) for k in range(self.K)]

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
        book = path + ".json"
        recorded = art.read_json(book).get("precision") if os.path.exists(book) else None
        now = self.program.precision.describe()
        keys = ("precision", "matmul_precision")
        if recorded is not None and any(recorded.get(k) != now[k] for k in keys):
            raise JoptError(
                f"{os.path.basename(path)} was written under precision {recorded.get('precision')}"
                f" (matmul {recorded.get('matmul_precision')}), the run now asks for "
                f"{now['precision']} (matmul {now['matmul_precision']}); resume with the "
                "precision it was trained in"
            )
        like = {"state": self.state, "best": (self.state.params, self.state.model_state)}
        tree = restore_checkpoint(path, like)
        self.state = tree["state"]
        for k, v in bookkeeping.items():
            setattr(m, k, v)
        es = self.base.regularization.early_stopping
        if m.best_epoch is not None and es.patience > 0 and es.restore_best:
            m.best_vars = jax.device_get(tree["best"])
        m.rows = [r for r in m.rows if r["epoch"] <= m.last_epoch]

    # -- the loop ----------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return float(self.mult(jnp.asarray(step, jnp.int32))) if self.mult is not None else 1.0

    def _opt_logs(self, opt_state) -> list[dict]:
        from jopt.train import optimizer_logs

        out = optimizer_logs(opt_state)
        return [
            {
                k: _float(self.member(v, i))
                for k, v in out.items()
                if v.ndim == (self.K > 1)  # per-member scalars only
            }
            for i in range(self.K)
        ]

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
            last = self.members[0].rows[-1] if self.K == 1 else {}
            shown = [k for k in ("train_loss", "val_accuracy") if last.get(k) is not None]
            bar.set_postfix({k: f"{last[k]:.4g}" for k in shown})
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
            if (
                mb.best_vars is not None
                and cfg.regularization.early_stopping.patience > 0
                and cfg.regularization.early_stopping.restore_best
            ):
                params, ms = mb.best_vars
                mb.final_state = mb.final_state._replace(params=params, model_state=ms)

    def _record(
        self, epoch: int, m: dict, ev: dict, dt: float, elapsed: float, evaluated: bool
    ) -> None:
        cfg = self.base
        es = cfg.regularization.early_stopping
        step = epoch * self.setup.steps_per_epoch
        opt_logs = self._opt_logs(self.state.opt_state)
        scales = self.plateau_scales(self.state.opt_state)
        diag = self._diagnostics(epoch)
        for k, mb in enumerate(self.members):
            if not mb.active:
                continue
            row: dict[str, Any] = {"epoch": epoch, "step": step}
            for key in ("train_loss", "train_accuracy", "penalty", "grad_norm"):
                if key in m:
                    row[key] = _float(self.member(m[key], k))
            for key, v in ev.items():
                row[key] = _float(self.member(v, k))
            row.update(opt_logs[k])
            lr = vmappable_values(mb.config).get(lr_name(cfg))
            # the next step's: schedule multiplier times the plateau's scale
            row["learning_rate"] = lr * self.lr_at(step) * scales[k] if lr is not None else None
            row.update(diag[k] if diag else {})
            row["epoch_time"] = dt
            row["time"] = elapsed
            mb.rows.append(row)
            if mb.tracker is not None:
                mb.tracker.log_row(row)
            mb.last_epoch = epoch
            mb.diverged = self._divergence(mb, k, m, row, epoch, evaluated)
            if mb.diverged is not None:
                mb.active = False
                mb.final_state = jax.device_get(self.member(self.state, k))
            elif evaluated and self.metric in row:
                improved, mb.best_value, mb.best_epoch, stop = self.stopping.update(
                    epoch, row[self.metric], mb.best_value, mb.best_epoch
                )
                mb.bad_evals = 0 if improved else mb.bad_evals + 1
                if improved and es.patience > 0 and es.restore_best:
                    mb.best_vars = jax.device_get(self.eval_vars(self.member(self.state, k)))
                if stop and es.patience > 0:
                    mb.active, mb.stopped_early = False, True
                    mb.final_state = jax.device_get(self.member(self.state, k))
            if mb.run_dir is not None and mb.writes:
                art.write_jsonl(os.path.join(mb.run_dir, "metrics.jsonl"), mb.rows)
        self._due(epoch)

    def _divergence(
        self, mb: Member, k: int, m: dict, row: dict, epoch: int, monitored: bool
    ) -> dict | None:
        """``train.nonfinite`` for member ``k`` after ``epoch``: where it diverged, else None.

        ``skip``: more than ``max_consecutive_skips`` steps in a row with a non-finite gradient
        (they were skipped: params and state unchanged; the run carries across epochs);
        ``stop``: the first step with a non-finite loss or gradient. Under both, a non-finite
        monitored metric (``val_loss``...) is divergence too. ``jopt.check_state`` (the
        guard's own rule) runs on the member's optimizer state as well.
        """
        from jopt.combinators import NonFiniteError, check_state

        t = self.base.train
        finite = np.asarray(self.member(m["step_finite"], k)).reshape(-1)
        loss_ok = np.isfinite(np.asarray(self.member(m["step_loss"], k))).reshape(-1)
        row["nonfinite_steps"] = int(np.sum(~finite | ~loss_ok))
        if t.nonfinite == "ignore":
            return None
        spe = self.setup.steps_per_epoch
        limit = 0 if t.nonfinite == "stop" else t.max_consecutive_skips
        run = mb.skip_run
        for i in range(len(finite)):
            bad = not finite[i] or (t.nonfinite == "stop" and not loss_ok[i])
            run = run + 1 if bad else 0
            if run > limit:
                what = "gradient" if loss_ok[i] else "loss" if finite[i] else "loss and gradient"
                return _diverged(epoch, (epoch - 1) * spe + i + 1, what, run, t.nonfinite, limit)
        mb.skip_run = run
        try:
            check_state(self.member(self.state.opt_state, k))
        except NonFiniteError:
            return _diverged(epoch, epoch * spe, "gradient", run, t.nonfinite, limit)
        if monitored and self.metric in row and row[self.metric] is None:
            return _diverged(epoch, epoch * spe, self.metric, 0, t.nonfinite, limit)
        return None

    def _due(self, epoch: int, force: bool = False) -> bool:
        """Write checkpoints when the cadence says so (or ``force``); False if disabled."""
        cfg = self.base
        if not cfg.output.checkpoints:
            return False
        every = cfg.train.checkpoint_every
        if not force and not (every and epoch % every == 0):
            return True
        for k, mb in enumerate(self.members):
            if mb.run_dir is None or not mb.active:
                continue
            self._checkpoint(mb, epoch, self.member(self.state, k))
        return True

    def _checkpoint(self, mb: Member, epoch: int, state) -> None:
        best = mb.best_vars if mb.best_vars is not None else (state.params, state.model_state)
        tree = {"state": state, "best": best}
        path = str(save_checkpoint(epoch_checkpoint_path(mb.run_dir, epoch), tree))
        if mb.writes:
            art.write_json(
                path + ".json",
                {
                    "epoch": epoch,
                    **mb.bookkeeping(),
                    "train_s": self.train_s,
                    "steps_per_epoch": self.setup.steps_per_epoch,
                    "precision": self.program.precision.describe(),
                },
            )

    def save_final(self) -> None:
        for mb in self.members:
            if mb.run_dir is not None and self.base.output.checkpoints:
                st = mb.final_state
                self._checkpoint(mb, mb.last_epoch, jax.tree.map(jnp.asarray, st))

    # -- diagnostics hook (jopt.numerics) ----------------------------------------------------
    def _diagnostics(self, epoch: int) -> list[dict] | None:
        d = self.base.diagnostics
        if not d.sharpness_every or epoch % d.sharpness_every:
            return None
        import jopt.numerics as jn

        if self.sharpness_fn is None:
            model, spec = self.setup.model, self.setup.spec
            loss = "cross_entropy" if spec.loss == "cross_entropy" else "mse"
            n = min(len(self.setup.data.y_train), 1024)
            batches = jn.stack_batches(
                np.asarray(self.setup.data.x_train[:n]),
                np.asarray(self.setup.data.y_train[:n]),
                batch_size=n,
            )

            def sharp(params, model_state, key):
                fn = jn.flax_loss_fn(model, loss, model_state, train=False)
                return jn.sharpness(fn, params, batches, key=key, num_iters=d.sharpness_iters)

            from jopt.experiment._policy import config_precision
            from jopt.train import under_matmul_precision

            self.sharpness_fn = jax.jit(under_matmul_precision(sharp, config_precision(self.base)))
        out = []
        scales = self.plateau_scales(self.state.opt_state)
        for k, mb in enumerate(self.members):
            st = self.member(self.state, k)
            lam = _float(
                self.sharpness_fn(st.params, st.model_state, jax.random.key(mb.config.seed + epoch))
            )
            lr = vmappable_values(mb.config)[lr_name(self.base)]
            lr_now = lr * self.lr_at(epoch * self.setup.steps_per_epoch) * scales[k]
            out.append({"sharpness": lam, "stability_bound": 2.0 / lr_now if lr_now else None})
        return out
