"""Registry entries for optax's main-namespace optimizers that jopt added in issue 15 (H3a).

Imported at the end of ``tests/registry.py``. Each entry names its optax counterpart, so the
parity test runs it (100 steps, <= 1e-6). Convergence settings are honest per optimizer: the
sign-based and layer-wise methods need a decaying rate to settle, and their tolerances say
how close they get. ``polyak_sgd`` needs ``value=loss`` in ``update``, which the generic
contract loop does not pass: it is tested in ``tests/test_optimizers_catalogue.py``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import optax
from registry import LR, OptimizerCase, register

import jopt

S = jopt.schedules
KEY = jax.random.key(7)


def _quiet_optimistic_adam(**kw):
    # optax deprecates optimistic_adam (in favour of _v2) with a warning; the oracle is silent.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.optimistic_adam(**kw)


def _scalars_as_vectors(tx):
    """optax.sm3 fails on 0-d leaves; jopt treats a scalar as a 1-vector. This oracle does the
    same around optax's transform."""

    def up(tree):
        return jax.tree.map(lambda x: jnp.reshape(x, (1,)) if jnp.ndim(x) == 0 else x, tree)

    def down(tree, like):
        return jax.tree.map(lambda x, y: jnp.reshape(x, jnp.shape(y)), tree, like)

    def init(params):
        return tx.init(up(params))

    def update(updates, state, params=None, **extra):
        u, s = tx.update(up(updates), state, None if params is None else up(params), **extra)
        return down(u, updates), s

    return optax.GradientTransformation(init, update)


_MASK = {"a": True, "b": False}

for _case in (
    OptimizerCase(
        "adabelief",
        jopt.adabelief,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        optax_factory=optax.adabelief,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10, nesterov=True),
        ),
    ),
    OptimizerCase(
        "yogi",
        jopt.yogi,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=S.cosine_decay(0.05, 6000)), 6000, 1e-2),
        optax_factory=optax.yogi,
        parity=(dict(learning_rate=LR), dict(learning_rate="sched", b1=0.8, b2=0.99, eps=1e-4)),
    ),
    OptimizerCase(
        "adan",
        jopt.adan,
        quadratic=(dict(learning_rate=0.05), 400, 1e-3),
        rosenbrock=(dict(learning_rate=0.01), 4000, 1e-2),
        optax_factory=optax.adan,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.9, b2=0.8, b3=0.95, weight_decay=0.1, mask=_MASK),
        ),
    ),
    OptimizerCase(
        "adamaxw",
        jopt.adamaxw,
        quadratic=(dict(learning_rate=0.05, weight_decay=0.0), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02, weight_decay=0.0), 6000, 1e-2),
        optax_factory=optax.adamaxw,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, eps=1e-4, weight_decay=0.1, mask=_MASK),
        ),
    ),
    OptimizerCase(
        "nadamw",
        jopt.nadamw,
        quadratic=(dict(learning_rate=0.05, weight_decay=0.0), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02, weight_decay=0.0), 3000, 1e-2),
        optax_factory=optax.nadamw,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, weight_decay=0.1, mask=_MASK),
        ),
    ),
    OptimizerCase(
        "noisy_sgd",
        jopt.noisy_sgd,
        quadratic=(dict(learning_rate=0.05, eta=1e-4, key=KEY), 400, 1e-6),
        rosenbrock=(dict(learning_rate=2e-3, eta=1e-8, key=KEY), 10000, 1e-2),
        optax_factory=optax.noisy_sgd,
        parity=(dict(learning_rate=LR, key=KEY), dict(learning_rate="sched", eta=0.01, key=KEY)),
    ),
    OptimizerCase(
        "sign_sgd",
        jopt.sign_sgd,
        quadratic=(dict(learning_rate=S.cosine_decay(0.1, 1000)), 1000, 1e-6),
        # A sign step moves every coordinate by the full rate: in Rosenbrock's curved valley
        # it zig-zags at the scale of the rate and gets within ~0.1 of (1, 1).
        rosenbrock=(dict(learning_rate=S.cosine_decay(0.003, 10000)), 10000, 1.5e-1),
        optax_factory=optax.sign_sgd,
        parity=(dict(learning_rate=LR), dict(learning_rate="sched")),
    ),
    OptimizerCase(
        "signum",
        jopt.signum,
        quadratic=(dict(learning_rate=S.cosine_decay(0.1, 1000)), 1000, 1e-6),
        rosenbrock=(dict(learning_rate=S.cosine_decay(0.01, 8000)), 8000, 1e-2),
        optax_factory=optax.signum,
        parity=(dict(learning_rate=LR), dict(learning_rate="sched", beta=0.5)),
    ),
    OptimizerCase(
        "optimistic_gradient_descent",
        jopt.optimistic_gradient_descent,
        quadratic=(dict(learning_rate=0.05), 400, 1e-6),
        # A method for min-max games: on Rosenbrock it is gradient descent with a lagged
        # correction, unstable above lr ~1.2e-3 and stalled ~0.48 from (1, 1) after 8k-30k
        # steps (measured). The bound below only checks that it makes that progress (24.2 ->).
        rosenbrock=(dict(learning_rate=1e-3), 8000, 0.6),
        optax_factory=optax.optimistic_gradient_descent,
        parity=(dict(learning_rate=LR), dict(learning_rate="sched", alpha=0.5, beta=2.0)),
    ),
    OptimizerCase(
        "optimistic_adam",
        jopt.optimistic_adam,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.005), 6000, 1e-2),
        optax_factory=_quiet_optimistic_adam,
        parity=(dict(learning_rate=LR), dict(learning_rate=LR, optimism=0.02, b1=0.8)),
        signature_compatible=False,  # the oracle is wrapped; checked in test_optimizers_catalogue
    ),
    OptimizerCase(
        "optimistic_adam_v2",
        jopt.optimistic_adam_v2,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=S.cosine_decay(0.02, 6000)), 6000, 1e-2),
        optax_factory=optax.optimistic_adam_v2,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", alpha=0.5, beta=2.0, b1=0.8, nesterov=False),
        ),
    ),
    OptimizerCase(
        "rprop",
        jopt.rprop,
        quadratic=(dict(learning_rate=0.01), 300, 1e-6),
        # Rprop adapts each coordinate's step to sign changes only; in Rosenbrock's valley the
        # steps shrink to min_step_size before it reaches the minimum (~0.05 away).
        rosenbrock=(dict(learning_rate=0.001), 3000, 1e-1),
        optax_factory=optax.rprop,
        skip_trees=(("complex", "Rprop compares signs: real parameters only (optax too)"),),
        parity=(
            dict(learning_rate=LR),
            dict(
                learning_rate=LR,
                eta_minus=0.3,
                eta_plus=1.5,
                min_step_size=1e-3,
                max_step_size=0.05,
            ),
        ),
    ),
    OptimizerCase(
        "adafactor",
        jopt.adafactor,
        quadratic=(dict(learning_rate=S.cosine_decay(0.1, 1000)), 1000, 1e-6),
        rosenbrock=(
            dict(learning_rate=S.cosine_decay(0.05, 10000), multiply_by_parameter_scale=False),
            10000,
            1e-2,
        ),
        optax_factory=optax.adafactor,
        parity=(
            dict(learning_rate=LR),
            # min_dim_size_to_factor=2 factors the (2, 4) leaf: the row/column path.
            dict(
                learning_rate=0.1,
                min_dim_size_to_factor=2,
                momentum=0.9,
                weight_decay_rate=0.01,
                weight_decay_mask=_MASK,
            ),
            dict(
                learning_rate=LR,
                multiply_by_parameter_scale=False,
                clipping_threshold=None,
                factored=False,
                decay_rate=0.5,
            ),
        ),
    ),
    OptimizerCase(
        "sm3",
        jopt.sm3,
        quadratic=(dict(learning_rate=0.1), 1000, 1e-3),
        # With momentum 0.9 SM3's accumulated (never decaying) denominators stall it in the
        # valley; without momentum it reaches the minimum.
        rosenbrock=(dict(learning_rate=0.5, momentum=0.0), 8000, 1e-2),
        optax_factory=lambda **kw: _scalars_as_vectors(optax.sm3(**kw)),
        skip_trees=(("complex", "optax.scale_by_sm3 rejects complex parameters"),),
        parity=(dict(learning_rate=0.1), dict(learning_rate=0.1, momentum=0.5)),
        signature_compatible=False,  # the oracle is wrapped; checked in test_optimizers_catalogue
    ),
    OptimizerCase(
        "novograd",
        jopt.novograd,
        quadratic=(dict(learning_rate=S.cosine_decay(0.1, 2000)), 2000, 1e-6),
        rosenbrock=(dict(learning_rate=S.cosine_decay(0.01, 8000)), 8000, 1e-2),
        optax_factory=optax.novograd,
        parity=(
            dict(learning_rate=LR),
            # Per-layer normalisation amplifies last-ulp differences of the two compiled
            # programs; with a sizeable weight decay on top they reach ~1e-5 by step 100.
            dict(learning_rate="sched", b1=0.8, b2=0.5, eps=1e-4),
        ),
    ),
    OptimizerCase(
        "lars",
        jopt.lars,
        quadratic=(dict(learning_rate=S.cosine_decay(10.0, 2000)), 2000, 1e-6),
        rosenbrock=(dict(learning_rate=S.cosine_decay(1.0, 8000)), 8000, 1e-2),
        optax_factory=optax.lars,
        parity=(
            dict(learning_rate=1.0),
            dict(
                learning_rate=1.0,
                weight_decay=0.1,
                weight_decay_mask=_MASK,
                trust_coefficient=0.01,
                trust_ratio_mask={"a": False, "b": True},
                momentum=0.5,
                nesterov=True,
            ),
        ),
    ),
    OptimizerCase(
        "fromage",
        jopt.fromage,
        quadratic=(dict(learning_rate=S.cosine_decay(0.05, 2000)), 2000, 1e-6),
        rosenbrock=(dict(learning_rate=S.cosine_decay(0.01, 8000)), 8000, 1e-2),
        optax_factory=optax.fromage,
        parity=(dict(learning_rate=LR), dict(learning_rate="sched", min_norm=1e-3)),
    ),
):
    register(_case)
