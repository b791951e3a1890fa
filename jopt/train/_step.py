"""The train step and the scan-fused epoch, both pure and un-jitted (the caller owns ``jit``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jopt.combinators import update_and_apply
from jopt.core import all_finite, global_norm
from jopt.core.errors import JoptError
from jopt.data import Augment, Batching, augment_batch
from jopt.fused import (
    FusedState,
    layout_scope,
    state_to_packed,
    state_to_per_leaf,
    unread_buffers,
    unread_leaves,
)
from jopt.models import ModelAdapter
from jopt.train._losses import LOSSES, make_loss, one_hot_targets, penalty
from jopt.train._state import TrainState


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What the step minimizes: a data loss plus optional L1/L2 penalties.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        num_classes: classes (classification) or regression outputs.
        loss: ``cross_entropy`` (classification default), ``mse`` (regression default), ``huber``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        huber_delta: the Huber threshold.
        l1, l2: penalty strengths (see :mod:`jopt.train._losses` for when to use them).
        penalty_mask: a pytree of bools like the params; default: weights only (ndim >= 2).
        loss_fn: a user's loss ``fn(outputs, targets) -> (b,)`` per-example losses, in place
            of the built-in ones (``loss`` then only names it). ``targets`` are what the
            built-in losses get: one-hot float ``(b, K)`` for classification (label smoothing
            and mixup applied), float ``(b,)`` or ``(b, k)`` for regression. Per-example, so
            padding masks, example weights and gradient accumulation stay exact.
    """

    task: str = "classification"
    num_classes: int = 2
    loss: str | None = None
    label_smoothing: float = 0.0
    huber_delta: float = 1.0
    l1: float = 0.0
    l2: float = 0.0
    penalty_mask: Any = None
    loss_fn: Callable | None = None

    def __post_init__(self):
        if self.task not in ("classification", "regression"):
            raise JoptError(f"unknown task {self.task!r}; allowed: classification, regression")
        if self.loss_fn is not None:
            if not callable(self.loss_fn):
                raise JoptError(f"loss_fn must be callable, got {type(self.loss_fn).__name__}")
            name = self.loss or getattr(self.loss_fn, "__name__", "user loss")
            object.__setattr__(self, "loss", name)
            self._check_common()
            return
        loss = self.loss or ("cross_entropy" if self.task == "classification" else "mse")
        if loss not in LOSSES:
            raise JoptError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
        if loss == "cross_entropy" and self.task != "classification":
            raise JoptError("loss cross_entropy needs a classification task; use mse or huber")
        self._check_common()
        object.__setattr__(self, "loss", loss)

    def _check_common(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise JoptError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.l1 < 0 or self.l2 < 0:
            raise JoptError(f"l1 and l2 must be >= 0, got {self.l1}, {self.l2}")

    def per_example(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """``loss(outputs, targets) -> (b,)`` float32: the built-in loss or ``loss_fn``
        (whose result must have shape ``(b,)``: checked when traced, one line)."""
        if self.loss_fn is None:
            return make_loss(self.loss, huber_delta=self.huber_delta)
        fn, name = self.loss_fn, self.loss

        def user(outputs, targets):
            out = jnp.asarray(fn(outputs, targets))
            if out.shape != (targets.shape[0],) or not jnp.issubdtype(out.dtype, jnp.floating):
                raise JoptError(
                    f"loss {name}: returned {out.dtype}{list(out.shape)}, expected per-example "
                    f"float losses of shape [{targets.shape[0]}] (one per example)"
                )
            return out.astype(jnp.float32)

        return user


def _wide(dtype) -> jnp.dtype:
    """float32, or the dtype itself where wider (bfloat16 gradients are averaged in float32)."""
    dtype = jnp.dtype(dtype)
    return dtype if dtype.itemsize >= 4 else jnp.dtype(jnp.float32)


def _targets(spec: LossSpec, y: jax.Array) -> jax.Array:
    if spec.loss == "cross_entropy" or (spec.loss_fn and spec.task == "classification"):
        return one_hot_targets(y, spec.num_classes, spec.label_smoothing)
    if spec.task == "classification":  # mse/huber on one-hot targets
        return one_hot_targets(y, spec.num_classes)
    return y


def apply_model(model: nn.Module, params, model_state: dict, x, *, train: bool, key=None):
    """``(outputs, new_model_state)``; batch statistics are updated only when training.

    ``model``: a flax linen module, or a ``jopt.models.ModelAdapter`` (flax NNX, equinox)."""
    if isinstance(model, ModelAdapter):
        return model.apply(params, model_state, x, train=train, key=key)
    variables = {"params": params, **model_state}
    rngs = {"dropout": key} if key is not None else None
    if train and model_state:
        out, new_state = model.apply(variables, x, train=True, rngs=rngs, mutable=list(model_state))
        return out, dict(new_state)
    return model.apply(variables, x, train=train, rngs=rngs), model_state


def pack_train_state(state: TrainState, tx: Any, layout: Any, offsets: Any = ()) -> TrainState:
    """``state`` with packed parameters and optimizer state (the form a ``layout`` step takes).

    ``params`` becomes ``layout.pack(params)`` (``{buffer: 1-D}``) and ``opt_state`` a
    ``jopt.fused.FusedState`` of ``tx`` on those buffers holding the same values
    (``jopt.fused.state_to_packed``) and the leaf ``offsets``: none by default (the step cuts
    the leaves with one static split per buffer, what ``jopt run`` does), or
    ``layout.offsets()`` for dynamic slices at offsets held as data.
    """
    inner = state_to_packed(tx, layout, state.opt_state, offsets=False).inner
    packed = layout.pack(state.params)
    return state._replace(params=packed, opt_state=FusedState(inner, tuple(offsets)))


def unpack_train_state(state: TrainState, tx: Any, layout: Any) -> TrainState:
    """The inverse of :func:`pack_train_state`: parameters and optimizer state per leaf, as
    ``init_train_state`` makes them (what checkpoints, evaluation and logs read). Cut with
    the leaf offsets the state carries (dynamic slices), else one static split per buffer."""
    opt, offsets = state.opt_state, None
    if isinstance(opt, FusedState):
        opt, offsets = opt.inner, (opt.offsets if len(opt.offsets) == layout.num_leaves else None)
    return state._replace(
        params=layout.unpack(state.params, offsets),
        opt_state=state_to_per_leaf(tx, layout, opt, offsets),
    )


def make_train_step(
    model: nn.Module,
    tx: Any,
    spec: LossSpec,
    *,
    augment: Augment | None = None,
    kind: str = "tabular",
    layout: Any = None,
) -> Callable:
    """A pure ``step(state, xb, yb, wb, key) -> (state, metrics)`` for one optimizer step.

    ``xb``/``yb``/``wb`` have a leading micro-batch axis ``k`` (k = 1 except for
    ``accumulate``): ``(k, b, ...)``. The gradient is ``sum_i w_i grad l_i / sum_i w_i`` over all
    k*b examples, plus the penalty's gradient: exact gradient accumulation.

    With a ``layout`` (``jopt.fused.packed_layout(tx, params)``) the step is *packed*: ``state``
    comes from :func:`pack_train_state`, the model reads its leaves as views of the buffers
    (one split per buffer, or dynamic slices at offsets the state carries; the gradient of
    either is one concatenation), the gradient arrives as one buffer per
    dtype and leaf class and ``tx`` updates the buffers (``jopt.fused.on_buffers``). The results
    equal the per-leaf step's up to float rounding.
    """
    # Buffers (packed) or leaves (per leaf) whose gradient tx never reads (frozen groups): cut
    # from a stop_gradient, so the backward pass computes nothing for them (their gradient is
    # zeros, in both layouts alike).
    no_grad = frozenset() if layout is None else unread_buffers(tx, layout)
    frozen_leaves: dict = {}

    def per_leaf_cut(p):
        key = (jax.tree.structure(p), tuple((x.shape, x.dtype) for x in jax.tree.leaves(p)))
        if key not in frozen_leaves:
            frozen_leaves[key] = unread_leaves(tx, p)
        return frozen_leaves[key]

    loss_fn = spec.per_example()
    augment = augment or Augment()
    augment.check(kind)
    use_penalty = bool(spec.l1 or spec.l2)
    classification = spec.task == "classification"

    def tree(p, offsets):
        if layout is None:
            cut = per_leaf_cut(p)
            if not any(cut):
                return p
            leaves, treedef = jax.tree.flatten(p)
            leaves = [
                jax.lax.stop_gradient(x) if c else x for x, c in zip(leaves, cut, strict=True)
            ]
            return jax.tree.unflatten(treedef, leaves)
        if not no_grad:
            return layout.unpack(p, offsets)
        live = layout.unpack_leaves({g: v for g, v in p.items() if g not in no_grad}, offsets)
        cut = {g: jax.lax.stop_gradient(v) for g, v in p.items() if g in no_grad}
        fixed = layout.unpack_leaves(cut, offsets)
        leaves = [a if a is not None else b for a, b in zip(live, fixed, strict=True)]
        return jax.tree.unflatten(layout.treedef, leaves)

    def micro_objective(params, model_state, x, y, w, key, offsets):
        """``(sum_i w_i l_i, (outputs, new model state))`` on one micro-batch."""
        k_aug, k_drop = jax.random.split(key)
        targets = _targets(spec, y)
        if augment.active:
            x, targets = augment_batch(augment, k_aug, x, targets, kind)
        out, new_ms = apply_model(
            model, tree(params, offsets), model_state, x, train=True, key=k_drop
        )
        return jnp.sum(w * loss_fn(out, targets)), (out, new_ms)

    def objective(params, model_state, xb, yb, wb, keys, offsets):
        """The step's objective at ``params`` on its batch (same keys, so the same dropout
        and augmentation): weighted mean loss plus penalty, what ``value=`` holds."""

        def body(ms, inp):
            lsum, (_, ms) = micro_objective(params, ms, *inp, offsets)
            return ms, lsum

        _, lsums = jax.lax.scan(body, model_state, (xb, yb, wb, keys))
        value = jnp.sum(lsums) / jnp.maximum(jnp.sum(wb), 1.0)
        if use_penalty:
            value = value + penalty(
                tree(params, offsets), l1=spec.l1, l2=spec.l2, mask=spec.penalty_mask
            )
        return value

    def micro(params, model_state, x, y, w, key, offsets=None):
        (lsum, (out, new_ms)), g = jax.value_and_grad(micro_objective, has_aux=True)(
            params, model_state, x, y, w, key, offsets
        )
        if classification:
            hit = (jnp.argmax(out, -1) == y).astype(jnp.float32)
            correct = jnp.sum(w * hit)
        else:
            correct = jnp.zeros((), jnp.float32)
        return g, lsum, correct, new_ms

    def step(state: TrainState, xb, yb, wb, key):
        k = xb.shape[0]
        keys = jax.random.split(key, k)
        opt_state, offsets = state.opt_state, None
        if layout is not None:  # a packed state: FusedState(inner, leaf offsets)
            # the offsets stay in the state; the views use them or static splits
            opt_state, offsets = opt_state.inner, layout.view_offsets(state.opt_state.offsets)
        if k == 1:
            g, lsum, correct, ms = micro(
                state.params, state.model_state, xb[0], yb[0], wb[0], keys[0], offsets
            )
        else:

            def body(carry, inp):
                g_acc, l_acc, c_acc, ms = carry
                g, lsum, correct, ms = micro(state.params, ms, *inp, offsets)
                g_acc = jax.tree.map(lambda a, b: a + b.astype(a.dtype), g_acc, g)
                return (g_acc, l_acc + lsum, c_acc + correct, ms), None

            # Accumulate in float32 (or wider) also for bfloat16 parameters.
            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, _wide(p.dtype)), state.params)
            init = (
                zeros,
                jnp.zeros((), jnp.float32),
                jnp.zeros((), jnp.float32),
                state.model_state,
            )
            (g, lsum, correct, ms), _ = jax.lax.scan(body, init, (xb, yb, wb, keys))
        count = jnp.sum(wb)
        denom = jnp.maximum(count, 1.0)
        grads = jax.tree.map(
            lambda a, p: (a.astype(_wide(a.dtype)) / denom.astype(_wide(a.dtype))).astype(p.dtype),
            g,
            state.params,
        )
        loss = lsum / denom
        if use_penalty:
            pen, pen_grads = jax.value_and_grad(
                lambda p: penalty(tree(p, offsets), l1=spec.l1, l2=spec.l2, mask=spec.penalty_mask)
            )(state.params)
            grads = jax.tree.map(jnp.add, grads, pen_grads)
        else:
            pen = jnp.zeros((), jnp.float32)

        def value_fn(p, **_):  # a line search passes its other extra arguments on
            return objective(p, state.model_state, xb, yb, wb, keys, offsets)

        # Every optimizer gets what any needs: polyak_sgd value=, lbfgs grad=/value_fn=,
        # sophia obj_fn=, sam (opaque) grad_fn=. Unused closures are never traced (free).
        # tx runs on the buffers with the layout in force (jopt.fused.on_buffers); a
        # non-finite guard goes around the update and its application (one lax.cond).
        with layout_scope(layout):
            params, opt_state = update_and_apply(
                tx,
                grads,
                opt_state,
                state.params,
                value=loss + pen,
                grad=grads,
                value_fn=value_fn,
                obj_fn=value_fn,
                grad_fn=lambda p, i: jax.grad(value_fn)(p),
            )
        if layout is not None:
            opt_state = FusedState(opt_state, state.opt_state.offsets)
        new_state = state._replace(
            params=params, opt_state=opt_state, step=state.step + 1, model_state=ms
        )
        metrics = {
            "loss": loss,
            "penalty": pen,
            "correct": correct,
            "count": count,
            "grad_norm": global_norm(grads),
            "finite": all_finite(grads),
        }
        return new_state, metrics

    return step


def with_offsets_argument(step: Callable) -> Callable:
    """``step(state, *batch) -> (state, metrics)`` as ``fn(state, offsets, *batch)``.

    A packed state's leaf offsets (``layout.offsets()``) come in as an argument of the compiled
    call, so its views are dynamic slices (one kernel per leaf size, as in ``jopt run``'s
    epoch), and are dropped from the state it returns, so they never join a donated carry.
    With ``offsets=()`` (a per-leaf state, or static splits) ``step`` runs unchanged.
    """

    def fn(state: TrainState, offsets: Any, *batch: Any):
        if offsets:
            state = state._replace(opt_state=state.opt_state._replace(offsets=offsets))
        state, metrics = step(state, *batch)
        if offsets:
            state = state._replace(opt_state=state.opt_state._replace(offsets=()))
        return state, metrics

    return fn


def make_train_epoch(
    model: nn.Module,
    tx: Any,
    spec: LossSpec,
    batching: Batching,
    *,
    augment: Augment | None = None,
    kind: str = "tabular",
    layout: Any = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict]]:
    """A pure, un-jitted ``epoch_fn(state, x, y) -> (state, metrics)``: one whole epoch.

    Shuffling (``jax.random.permutation``) and batching happen on device and every step runs
    under one ``lax.scan``, so a jitted epoch is a single dispatch. Pure, so sweeps can ``vmap``
    it (over states, with ``x``/``y`` broadcast) and the distributed layer can ``jit`` it with
    shardings. The state's key is split once per epoch; each step derives its dropout and
    augmentation keys with ``fold_in(step_key, i)``.

    ``metrics``: ``train_loss`` (weighted mean data loss over the epoch's steps whose loss is
    finite, with dropout and augmentation on; NaN if none is), ``train_accuracy``
    (classification), ``penalty`` and ``grad_norm`` (last step), ``step_loss``,
    ``step_grad_norm`` and ``step_finite`` (per-step arrays of length ``steps``;
    ``step_finite``: the step's gradient held no NaN/Inf).

    With a ``layout`` (``jopt.fused.packed_layout(tx, params)``) the epoch runs packed: it
    packs the (per-leaf) state once on entry (:func:`pack_train_state`), every step of the scan
    runs on the buffers (:func:`make_train_step` with ``layout``), and it unpacks once on exit,
    so the state it takes and returns is the per-leaf one either way. Pass
    ``epoch_fn(state, x, y, layout.offsets())`` with the offsets as *arguments of the jitted
    call* (never closed over: XLA would fold them back into constants): the leaves are then
    cut by dynamic slices, one compiled kernel per leaf size. Without them (``offsets=None``)
    each leaf is a static slice, a kernel of its own: the same results, several times the
    compile time on XLA:CPU (benchmarks/README.md).
    """
    step = make_train_step(model, tx, spec, augment=augment, kind=kind, layout=layout)

    def epoch_fn(state: TrainState, x: jax.Array, y: jax.Array, offsets: Any = None):
        if layout is not None:
            state = pack_train_state(state, tx, layout, () if offsets is None else offsets)
            state, metrics = epoch_body(state, x, y)
            return unpack_train_state(state, tx, layout), metrics
        return epoch_body(state, x, y)

    def epoch_body(state: TrainState, x: jax.Array, y: jax.Array):
        n = x.shape[0]
        key, k_perm, k_steps = jax.random.split(state.key, 3)
        idx, w = batching.plan(k_perm, n)

        def body(st, inp):
            i, idx_s, w_s = inp
            return step(st, x[idx_s], y[idx_s], w_s, jax.random.fold_in(k_steps, i))

        steps = jnp.arange(idx.shape[0], dtype=jnp.int32)
        state, m = jax.lax.scan(body, state._replace(key=key), (steps, idx, w))
        return state, summarize_steps(m, spec.task == "classification")

    return epoch_fn


def summarize_steps(m: dict, classification: bool) -> dict:
    """An epoch's metrics from its stacked step metrics (``make_train_epoch``'s, and the
    streamed epoch's, ``jopt.train.StreamEpoch``): see :func:`make_train_epoch`."""
    total = jnp.maximum(jnp.sum(m["count"]), 1.0)
    # the mean over steps with a finite loss (a skipped NaN step is counted apart, in
    # step_finite); NaN when no step had one
    ok = jnp.isfinite(m["loss"])
    n_ok = jnp.sum(jnp.where(ok, m["count"], 0.0))
    mean_ok = jnp.sum(jnp.where(ok, m["loss"] * m["count"], 0.0)) / jnp.maximum(n_ok, 1.0)
    out = {
        "train_loss": jnp.where(n_ok > 0, mean_ok, jnp.nan).astype(m["loss"].dtype),
        "penalty": m["penalty"][-1],
        "grad_norm": m["grad_norm"][-1],
        "step_loss": m["loss"],
        "step_grad_norm": m["grad_norm"],
        "step_finite": m["finite"],  # the step's gradient was all finite
    }
    if classification:
        out["train_accuracy"] = jnp.sum(m["correct"]) / total
    return out
