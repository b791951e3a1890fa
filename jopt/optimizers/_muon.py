"""Muon for matrices, AdamW for everything else, as ``optax.contrib.muon``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import GradientTransformation, JoptError, ScalarOrSchedule, chain
from jopt.optimizers._adam import adamw
from jopt.transforms import (
    Mask,
    add_decayed_weights,
    resolve_dimension_numbers,
    scale_by_learning_rate,
    scale_by_muon,
    scale_by_shape,
)

DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)  # Jordan et al. 2024 (optax's default)
# Named coefficient sets (optax.contrib.muon's presets): one row per step for "dion".
NS_COEFFS_PRESETS = {
    "standard": DEFAULT_NS_COEFFS,
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
}


def resolve_ns_coeffs(ns_coeffs: Any, name: str = "muon") -> Any:
    """``ns_coeffs`` with a preset name (``"standard"``, ``"dion"``) replaced by its numbers."""
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NS_COEFFS_PRESETS:
            raise JoptError(
                f"{name}: unknown ns_coeffs preset {ns_coeffs!r} "
                f"(allowed: {', '.join(NS_COEFFS_PRESETS)}, or numbers)"
            )
        return NS_COEFFS_PRESETS[ns_coeffs]
    return ns_coeffs


class MuonSplitState(NamedTuple):
    """State of :func:`muon` (each part a state over the whole tree, with the other kind of
    leaf set to ``None``).

    Attributes:
        muon: the Muon chain's state, for the 2-D leaves.
        adam: the AdamW state, for the other leaves.
    """

    muon: Any
    adam: Any


def _labels(tree: Any, dims: Any) -> Any:
    """True for the leaves Muon treats: 2-D ones, or with ``dims`` those it gives axes to."""
    if dims is None:
        return jax.tree.map(lambda x: jnp.ndim(x) == 2, tree)
    boxes = resolve_dimension_numbers(dims, tree)
    return jax.tree.map(lambda b: b.value is not None, boxes)


def _split(tree: Any, labels: Any, matrices: bool) -> Any:
    return jax.tree.map(lambda x, m: x if m == matrices else None, tree, labels)


def _merge(a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: y if x is None else x, a, b, is_leaf=lambda x: x is None)


def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: tuple[float, float, float] | str = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: jax.typing.ArrayLike = 0.95,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_decay_mask: Mask = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.999,
    adam_eps_root: jax.typing.ArrayLike = 0.0,
    adam_weight_decay: jax.typing.ArrayLike = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: jax.typing.ArrayLike | None = None,
) -> GradientTransformation:
    """Muon (Jordan et al. 2024) on every 2-D parameter, AdamW on the rest, as
    ``optax.contrib.muon`` with its default dimension numbers (a matrix ``(n_in, n_out)``):

    .. math::

        W \\leftarrow W - \\eta\\left(\\sqrt{\\max(1, n_{out}/n_{in})}\\;
            \\mathrm{NS}(\\hat m_t) + \\lambda W\\right)

    with :math:`\\hat m_t` and NS as in :func:`jopt.transforms.scale_by_muon`. Biases,
    scalars and higher-rank kernels use ``adamw(adam_learning_rate or learning_rate,
    adam_b1, adam_b2, eps, adam_eps_root, weight_decay=adam_weight_decay)``. Same arguments
    and defaults as ``optax.contrib.muon``, its ``ns_coeffs`` presets (``"standard"``,
    ``"dion"``: one coefficient row per step), ``preconditioning`` methods and
    ``consistent_rms`` and ``muon_weight_dimension_numbers`` included.

    Args:
        learning_rate: step size :math:`\\eta` (a number or a schedule).
        ns_coeffs: Newton-Schulz coefficients ``(a, b, c)``, rows of them (one per step),
            or a preset name: ``"standard"`` (the default numbers) or ``"dion"`` (Ahn et al.
            2025, five rows).
        ns_steps: Newton-Schulz iterations (with rows: the last ``ns_steps`` rows are used).
        beta: momentum decay.
        eps: added to the Frobenius norm before the iteration, and AdamW's epsilon.
        weight_decay: decoupled weight decay :math:`\\lambda` of the matrices.
        weight_decay_mask: which matrices decay (a tree of bools or a function).
        mu_dtype: dtype of the momenta (default: the parameters').
        nesterov: Nesterov momentum (both parts).
        adaptive: scale each orthogonalised update by :math:`\\langle \\hat m_t, u_t\\rangle`.
        preconditioning: ``"frobenius"``, ``"spectral"``, ``"aol"`` or ``"schatten"`` (see
            :func:`jopt.transforms.orthogonalize_via_newton_schulz`).
        adam_b1, adam_b2, adam_eps_root, adam_weight_decay: AdamW's for the other leaves.
        adam_learning_rate: AdamW's step size (default ``learning_rate``).
        muon_weight_dimension_numbers: ``None`` (Muon on every 2-D leaf), or which leaves
            Muon treats and how they form matrices: a
            :class:`jopt.transforms.MuonDimensionNumbers`, a prefix tree of them (``None``:
            AdamW) or a function of the parameters returning one.
        consistent_rms: ``None`` (width transfer) or :math:`r`: scale each matrix update
            by :math:`r\\sqrt{\\max(n_{in}, n_{out})}` instead.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.muon(1e-2)
        >>> p = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    muon_tx = chain(
        scale_by_muon(
            resolve_ns_coeffs(ns_coeffs),
            ns_steps,
            beta,
            eps,
            mu_dtype,
            nesterov=nesterov,
            adaptive=adaptive,
            preconditioning=preconditioning,
            weight_dimension_numbers=muon_weight_dimension_numbers,
        ),
        scale_by_shape(muon_weight_dimension_numbers, consistent_rms),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
    adam_tx = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        adam_b1,
        adam_b2,
        eps,
        adam_eps_root,
        mu_dtype,
        weight_decay=adam_weight_decay,
        nesterov=nesterov,
    )

    dims = muon_weight_dimension_numbers

    def init_fn(params):
        labels = _labels(params, dims)
        return MuonSplitState(
            muon_tx.init(_split(params, labels, True)),
            adam_tx.init(_split(params, labels, False)),
        )

    def update_fn(updates, state, params=None, **extra_args):
        labels = _labels(updates, dims)

        def part(tree, matrices):
            return None if tree is None else _split(tree, labels, matrices)

        um, ms = muon_tx.update(part(updates, True), state.muon, part(params, True))
        ua, as_ = adam_tx.update(part(updates, False), state.adam, part(params, False))
        return _merge(um, ua), MuonSplitState(ms, as_)

    return GradientTransformation(init_fn, update_fn)
