"""``jopt bench update``: one optimizer update (plus ``apply_updates``), jopt vs optax.

Every implementation runs on the same parameters and gradients, jitted once with its
parameters and state donated. The bytes an update must move are counted from shapes: it reads
the gradients, reads and writes the parameters, and reads and writes every per-parameter state
slot (the scalar state is negligible). Dividing by the measured bandwidth gives the time the
update would take at the roof; ``x_bound`` is how far above the roof the real step is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jopt.bench._memory import memory_report
from jopt.bench._roofline import Bandwidth, CopyBound
from jopt.bench._timing import StepStats, compile_fn, time_steps
from jopt.core import JoptError, apply_updates
from jopt.fused import fuse, on_buffers, packed_layout
from jopt.optimizers import adam, adamw, sgd

# optax / jopt: leaf by leaf; fused: jopt.fuse (packed state, tree parameters); packed: the
# parameters and gradients themselves are packed, as in jopt.fused.packed_train_step.
IMPLS = ("optax", "jopt", "fused", "packed")


def _jopt_optimizer(name: str, lr: float) -> Any:
    if name == "adam":
        return adam(lr)
    if name == "sgd":
        return sgd(lr, momentum=0.9)
    if name == "adamw":
        return adamw(lr, weight_decay=1e-4)
    raise JoptError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def _optax_optimizer(name: str, lr: float) -> Any:
    if name == "adam":
        return optax.adam(lr)
    if name == "sgd":
        return optax.sgd(lr, momentum=0.9)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=1e-4)
    raise JoptError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


# name -> description; sgd means SGD with heavy-ball momentum 0.9 (same for both libraries).
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW (weight decay 1e-4)", "sgd": "SGD, momentum 0.9"}


def make_tx(impl: str, optimizer: str, lr: float = 1e-3) -> Any:
    """The transform that implementation ``impl`` uses for ``optimizer``."""
    if impl == "optax":
        return _optax_optimizer(optimizer, lr)
    if impl in ("jopt", "packed"):
        return _jopt_optimizer(optimizer, lr)
    if impl == "fused":
        return fuse(_jopt_optimizer(optimizer, lr))
    raise JoptError(f"unknown implementation {impl!r}; choose from {', '.join(IMPLS)}")


def leaf_sizes(params: int, leaves: int) -> list[int]:
    """``leaves`` sizes summing to ``params``, as equal as possible (each at least 1)."""
    if leaves < 1 or params < leaves:
        raise JoptError(
            f"cannot split {params} parameters into {leaves} leaves; need 1 <= leaves <= params"
        )
    base, extra = divmod(params, leaves)
    return [base + (1 if i < extra else 0) for i in range(leaves)]


def make_params(params: int, leaves: int, dtype: Any = jnp.float32, seed: int = 0):
    """A dict of ``leaves`` 1-D arrays holding ``params`` values, and matching gradients."""
    sizes = leaf_sizes(params, leaves)
    key_p, key_g = jax.random.split(jax.random.key(seed))
    bounds = np.cumsum(sizes)[:-1].tolist()
    flat_p = jax.random.normal(key_p, (params,), dtype)
    flat_g = jax.random.normal(key_g, (params,), dtype) * 1e-2
    names = [f"w{i:05d}" for i in range(leaves)]
    # Copies, so every leaf owns its buffer (as real parameters do) and can be donated.
    p = {n: jnp.array(x) for n, x in zip(names, jnp.split(flat_p, bounds), strict=True)}
    g = {n: jnp.array(x) for n, x in zip(names, jnp.split(flat_g, bounds), strict=True)}
    return p, g


def update_bytes(tx: Any, params: Any) -> tuple[int, int]:
    """``(bytes moved by one update + apply, bytes of per-parameter state)``."""
    rep = memory_report(tx, params)
    state_bytes = sum(r.bytes for r in rep.rows if r.group != "-")
    return rep.param_bytes * 3 + 2 * state_bytes, state_bytes


@dataclasses.dataclass
class UpdateResult:
    optimizer: str
    impl: str
    params: int
    leaves: int
    compile_s: float
    step: StepStats
    bytes_per_step: int
    state_bytes: int
    bandwidth_gbs: float
    copy_gbs: float = 0.0  # the device's copy bound (0: not measured)

    @property
    def achieved_gbs(self) -> float:
        return self.bytes_per_step / self.step.median / 1e9

    @property
    def bound_s(self) -> float:
        return self.bytes_per_step / (self.bandwidth_gbs * 1e9)

    @property
    def x_bound(self) -> float:
        """Fastest step over the roofline time (both best cases, so load affects both alike)."""
        return self.step.min / self.bound_s

    @property
    def x_bound_median(self) -> float:
        return self.step.median / self.bound_s

    @property
    def copy_bound_s(self) -> float:
        """The step time at the device's copy bandwidth (``nan`` when not measured)."""
        return self.bytes_per_step / (self.copy_gbs * 1e9) if self.copy_gbs else float("nan")

    @property
    def x_copy(self) -> float:
        """Fastest step over the copy-bound time: how far from the hardware's roof."""
        return self.step.min / self.copy_bound_s

    @property
    def x_copy_median(self) -> float:
        return self.step.median / self.copy_bound_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "impl": self.impl,
            "params": self.params,
            "leaves": self.leaves,
            "compile_s": self.compile_s,
            "step_s": self.step.as_dict(),
            "bytes_per_step": self.bytes_per_step,
            "state_bytes": self.state_bytes,
            "achieved_gbs": self.achieved_gbs,
            "bound_s": self.bound_s,
            "x_bound": self.x_bound,
            "x_bound_median": self.x_bound_median,
            "copy_bound_gbs": self.copy_gbs or None,
            "copy_bound_s": self.copy_bound_s if self.copy_gbs else None,
            "x_copy": self.x_copy if self.copy_gbs else None,
            "x_copy_median": self.x_copy_median if self.copy_gbs else None,
        }


def _update_step(tx: Any) -> Callable:
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    return step


def bench_update(
    optimizer: str,
    impl: str,
    params: Any,
    grads: Any,
    bandwidth: Bandwidth,
    *,
    steps: int = 20,
    warmup: int = 2,
    min_time: float = 0.0,
    copy_bound: CopyBound | None = None,
) -> UpdateResult:
    """Compile and time one ``impl`` of ``optimizer`` on ``params``/``grads``.

    The result compares the step with two bounds: ``bandwidth`` (XLA's best elementwise kernel
    at this size) and, when given, ``copy_bound`` (the device's copy bandwidth on arrays larger
    than its cache).
    """
    # optax's own maths mixes Python floats with int32 counts, which strict promotion rejects.
    promotion = "standard" if impl == "optax" else jax.config.jax_numpy_dtype_promotion
    with jax.numpy_dtype_promotion(promotion):
        result = _bench_update(
            optimizer, impl, params, grads, bandwidth, steps=steps, warmup=warmup, min_time=min_time
        )
    if copy_bound is not None:
        result = dataclasses.replace(result, copy_gbs=copy_bound.gbs)
    return result


def _bench_update(optimizer, impl, params, grads, bandwidth, *, steps, warmup, min_time):
    tx = make_tx(impl, optimizer)
    moved, state_bytes = update_bytes(tx, params)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    n_leaves = len(jax.tree.leaves(params))
    if impl == "packed":  # the same values, held in buffers per (dtype, class) across steps
        layout = packed_layout(tx, params)
        params, grads = layout.pack(params), layout.pack(grads)
        tx = on_buffers(tx, layout)
    p = jax.tree.map(jnp.copy, params)  # donated below; keep the caller's arrays alive
    state = jax.jit(tx.init)(p)
    compiled, compile_s = compile_fn(_update_step(tx), p, state, grads, donate_argnums=(0, 1))
    stats, _ = time_steps(
        compiled, (p, state), grads, steps=steps, warmup=warmup, min_time=min_time
    )
    return UpdateResult(
        optimizer=optimizer,
        impl=impl,
        params=n_params,
        leaves=n_leaves,
        compile_s=compile_s,
        step=stats,
        bytes_per_step=moved,
        state_bytes=state_bytes,
        bandwidth_gbs=bandwidth.gbs,
    )
