"""Step-size stability of gradient descent.

On a quadratic ``L(θ) = ½ θᵀ H θ``, gradient descent with step ``η`` is the linear iteration
``θ ← (I − η H) θ``. Along the eigendirection of ``λ`` the error is multiplied by ``1 − ηλ``
each step, so the iteration converges iff ``|1 − ηλ| < 1`` for every eigenvalue, i.e.
``η < 2/λ_max``. For a general loss the same holds locally with ``λ_max`` the sharpness.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError


def _positive(x: jax.typing.ArrayLike, name: str) -> jax.Array:
    if isinstance(x, int | float) and not x > 0:
        raise JoptError(f"{name} must be > 0, got {x!r}")
    return jnp.asarray(x)


def stability_bound(learning_rate: jax.typing.ArrayLike) -> jax.Array:
    """``2 / η``: the largest sharpness gradient descent with step ``η`` can tolerate.

    Log it beside :func:`jopt.numerics.sharpness`; Cohen et al. 2021 ("Gradient Descent on
    Neural Networks Typically Occurs at the Edge of Stability") find the sharpness rises to it
    and hovers there.
    """
    return 2.0 / _positive(learning_rate, "learning_rate")


def max_stable_lr(lambda_max: jax.typing.ArrayLike) -> jax.Array:
    """``2 / λ_max``: the largest stable gradient-descent step for sharpness ``λ_max``."""
    return 2.0 / _positive(lambda_max, "lambda_max")


def gd_contraction(learning_rate: jax.typing.ArrayLike, eigenvalues: jax.Array) -> jax.Array:
    """``max_i |1 − η λ_i|``: GD's per-step error factor on a quadratic (< 1 iff it converges)."""
    eigenvalues = jnp.asarray(eigenvalues)
    return jnp.max(jnp.abs(1.0 - jnp.asarray(learning_rate, eigenvalues.dtype) * eigenvalues))
