"""Registry entries for issue 15's contrib and torch/Keras optimizers (imported by registry.py).

Each entry with an optax counterpart runs the 100-step parity test against ``optax.contrib``;
the others (sam, sophia, asgd, ftrl, lbfgs) are tested against their definitions in
``tests/test_contrib*.py`` / ``tests/test_lbfgs.py``.
"""

from __future__ import annotations

import optax
import optax.contrib
from registry import LR, OptimizerCase, register

import jopt

# A real distance/scale estimate from inner products: jopt refuses complex parameters (optax's
# estimate turns complex and its max() is then meaningless).
_REAL_ONLY = "a real-valued step-size estimate from inner products; jopt refuses complex params"

for _case in (
    OptimizerCase(
        "adopt",
        jopt.adopt,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.01), 4000, 1e-2),
        optax_factory=optax.contrib.adopt,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, b2=0.99, eps=1e-4, nesterov=True),
            dict(learning_rate=LR, use_clipping=False),
        ),
        skip_trees=(("complex", "ADOPT clips g/sqrt(v): complex values cannot be clipped"),),
        # clip_value_fn's default is a lambda (t ** 0.25): equal maths, never an equal object.
        signature_compatible=False,
    ),
    OptimizerCase(
        "ademamix",
        jopt.ademamix,
        quadratic=(dict(learning_rate=0.05, alpha=1.0, b3=0.99), 600, 1e-4),
        rosenbrock=(dict(learning_rate=0.01, alpha=1.0, b3=0.99), 4000, 1e-2),
        optax_factory=optax.contrib.ademamix,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, b2=0.99, b3=0.999, alpha=2.0, weight_decay=0.1),
            dict(learning_rate=LR, eps_root=1e-8, mask={"a": True, "b": False}),
        ),
    ),
    OptimizerCase(
        "prodigy",
        jopt.prodigy,
        quadratic=(dict(), 400, 1e-4),
        rosenbrock=(dict(learning_rate=jopt.schedules.cosine_decay(1.0, 4000)), 4000, 1e-2),
        optax_factory=optax.contrib.prodigy,
        # optax's estim_lr0=1e-6 barely moves in 100 random steps: start the estimate higher.
        # KNOWN: dict(estim_lr0=1e-2) on the dict tree drifts to 7e-6 (the max() in the distance
        # estimate amplifies float32 rounding); the two sets below hold 1e-6 on every tree.
        parity=(
            dict(learning_rate=0.5, betas=(0.8, 0.99), weight_decay=0.01, safeguard_warmup=True),
            dict(learning_rate=0.8, beta3=0.9, estim_lr0=1e-1, estim_lr_coef=0.5),
        ),
        skip_trees=(("complex", _REAL_ONLY),),
    ),
    OptimizerCase(
        "dadapt_adamw",
        jopt.dadapt_adamw,
        quadratic=(dict(), 400, 1e-4),
        rosenbrock=(dict(learning_rate=jopt.schedules.cosine_decay(1.0, 4000)), 4000, 1e-2),
        optax_factory=optax.contrib.dadapt_adamw,
        parity=(
            dict(estim_lr0=1e-2),
            dict(learning_rate=0.5, betas=(0.8, 0.99), weight_decay=0.01, estim_lr0=1e-2),
            dict(learning_rate=0.8, estim_lr0=1e-1),
        ),
        skip_trees=(("complex", _REAL_ONLY),),
    ),
    OptimizerCase(
        "schedule_free_sgd",
        jopt.schedule_free_sgd,
        quadratic=(dict(learning_rate=0.1), 400, 1e-4),
        rosenbrock=(dict(learning_rate=2e-3), 8000, 1e-2),
        optax_factory=optax.contrib.schedule_free_sgd,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, warmup_steps=10, b1=0.8, weight_decay=0.01),
        ),
    ),
    OptimizerCase(
        "schedule_free_adamw",
        jopt.schedule_free_adamw,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.01), 4000, 1e-2),
        optax_factory=optax.contrib.schedule_free_adamw,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, warmup_steps=10, b1=0.8, b2=0.99, weight_decay=0.01),
        ),
    ),
    OptimizerCase(
        "mechanize(adam)",
        lambda **kw: jopt.mechanize(jopt.adam(**kw), s_init=0.1),
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.01), 4000, 1e-2),
        optax_factory=lambda **kw: optax.contrib.mechanize(optax.adam(**kw), s_init=0.1),
        parity=(dict(learning_rate=LR),),
        skip_trees=(("complex", _REAL_ONLY),),
        signature_compatible=False,
    ),
):
    register(_case)
