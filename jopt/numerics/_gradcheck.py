"""Gradient checking by central finite differences.

For a unit direction ``d`` the directional derivative is checked two ways:

.. math::

    \\text{fd} = \\frac{L(θ + εd) − L(θ − εd)}{2ε} = ⟨∇L, d⟩ + O(ε^2), \\qquad
    \\text{ad} = ⟨\\texttt{jax.grad}(L)(θ), d⟩

and the error ``|fd − ad| / (max(|fd|, |ad|) + floor)`` is reported, with ``floor`` a small
absolute scale (``1e-6 (1+|L|)`` in float64) so that a leaf whose gradient is exactly zero
does not turn rounding noise into a huge relative error. In float64 a correct gradient gives
errors around ``1e-9``; a wrong one (a bad ``custom_vjp``, a missing term) gives ``O(0.1)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError

_SETTINGS = {
    # dtype: (eps, floor factor, default tolerance): eps ≈ cbrt(machine eps) balances the
    # O(ε²) truncation error against the O(macheps/ε) rounding error.
    "float64": (1e-5, 1e-6, 1e-4),
    "float32": (3e-3, 1e-3, 2e-2),
}


class GradCheckResult(NamedTuple):
    """What :func:`grad_check` found.

    Attributes:
        ok: every error is below ``tolerance``.
        max_error: the largest error over directions and leaves.
        directional_errors: errors along random directions through all parameters.
        leaf_errors: ``{leaf path: error}`` along a random direction inside each leaf.
        dtype: the dtype the check ran in (``"float64"`` unless it was impossible).
        tolerance: the threshold used for ``ok``.
    """

    ok: bool
    max_error: float
    directional_errors: np.ndarray
    leaf_errors: dict[str, float]
    dtype: str
    tolerance: float


def _to(tree: Any, dtype: Any) -> Any:
    def cast(x: Any) -> Any:
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def _check(loss_fn, params, args, key, num_directions, per_leaf, eps, floor_factor):
    f = jax.jit(loss_fn)
    g = jax.jit(jax.grad(loss_fn, allow_int=True))  # int leaves get float0 grads
    f0 = float(f(params, *args))
    grad = g(params, *args)
    floor = floor_factor * (1.0 + abs(f0))
    leaves, treedef = jax.tree.flatten(params)
    grad_leaves = jax.tree.leaves(grad)
    floating = [jnp.issubdtype(x.dtype, jnp.floating) for x in leaves]

    def error(direction: list) -> float:
        norm = float(np.sqrt(sum(float(jnp.vdot(d, d)) for d in direction)))
        direction = [d / norm for d in direction]  # int leaves carry float32 zeros
        shift = lambda s: [  # noqa: E731
            x + s * d if fl else x for x, d, fl in zip(leaves, direction, floating, strict=True)
        ]
        plus = f(jax.tree.unflatten(treedef, shift(eps)), *args)
        minus = f(jax.tree.unflatten(treedef, shift(-eps)), *args)
        fd = (float(plus) - float(minus)) / (2 * eps)
        ad = sum(
            float(jnp.vdot(gl, d))
            for gl, d, fl in zip(grad_leaves, direction, floating, strict=True)
            if fl
        )
        return abs(fd - ad) / (max(abs(fd), abs(ad)) + floor)

    def random_dir(k, only: int | None = None) -> list:
        ks = jax.random.split(k, len(leaves))
        return [
            jax.random.normal(kk, x.shape, x.dtype)
            if fl and (only is None or i == only)
            else jnp.zeros(x.shape, x.dtype if fl else jnp.float32)
            for i, (kk, x, fl) in enumerate(zip(ks, leaves, floating, strict=True))
        ]

    kd, kl = jax.random.split(key)
    dir_errors = np.array(
        [error(random_dir(k)) for k in jax.random.split(kd, num_directions)], np.float64
    )
    leaf_errors: dict[str, float] = {}
    if per_leaf:
        flat_paths = jax.tree_util.tree_flatten_with_path(params)[0]
        paths = [jax.tree_util.keystr(p) for p, _ in flat_paths]
        for i, k in enumerate(jax.random.split(kl, len(leaves))):
            if floating[i] and leaves[i].size:
                leaf_errors[paths[i] or "<root>"] = error(random_dir(k, only=i))
    return dir_errors, leaf_errors


def grad_check(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    *args: Any,
    key: jax.Array,
    num_directions: int = 8,
    per_leaf: bool = True,
    eps: float | None = None,
    tolerance: float | None = None,
    use_float64: bool = True,
) -> GradCheckResult:
    """Compare ``jax.grad(loss_fn)`` with central finite differences.

    Args:
        loss_fn: ``loss_fn(params, *args) -> scalar``.
        params: the point to check at (any pytree; non-floating leaves are left alone).
        *args: further inputs (e.g. a batch); their floating leaves are cast like ``params``.
        key: PRNG key for the random directions.
        num_directions: random directions through all parameters at once.
        per_leaf: also check one random direction inside each leaf, to localise an error.
        eps, tolerance: finite-difference step and pass threshold; defaults by dtype.
        use_float64: run in float64 (``jax.enable_x64``). If ``loss_fn`` cannot run in
            float64 (it closes over float32 arrays, which strict dtype promotion rejects), the
            check falls back to float32 with a looser tolerance; ``result.dtype`` says which.

    Example:
        >>> import jax, jax.numpy as jnp, jopt
        >>> r = jopt.numerics.grad_check(lambda p: jnp.sum(jnp.sin(p)), jnp.ones(3),
        ...                              key=jax.random.key(0))
        >>> r.ok
        True
    """
    if not isinstance(num_directions, int) or num_directions < 1:
        raise JoptError(f"num_directions must be a positive integer, got {num_directions!r}")
    if not any(jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) for x in jax.tree.leaves(params)):
        raise JoptError("grad_check needs params with at least one floating-point leaf")

    def run(dtype_name: str):
        e, floor_factor, tol = _SETTINGS[dtype_name]
        dtype = jnp.float64 if dtype_name == "float64" else jnp.float32
        p, a = _to(params, dtype), _to(args, dtype)
        errs = _check(loss_fn, p, a, key, num_directions, per_leaf, eps or e, floor_factor)
        return (*errs, tolerance if tolerance is not None else tol)

    dtype_name = "float32"
    result = None
    if use_float64:
        try:
            with jax.enable_x64(True):
                result = run("float64")
            dtype_name = "float64"
        except jax.dtypes.TypePromotionError:  # strict promotion: float32 constants in loss
            result = None
    if result is None:
        result = run("float32")
    dir_errors, leaf_errors, tol = result
    worst = max([float(np.max(dir_errors)), *leaf_errors.values()])
    return GradCheckResult(
        ok=bool(worst <= tol),
        max_error=worst,
        directional_errors=dir_errors,
        leaf_errors=leaf_errors,
        dtype=dtype_name,
        tolerance=float(tol),
    )
