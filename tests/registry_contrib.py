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

# A step-size estimate from inner products: jopt keeps it real (Re<a, b>, C^n as R^2n); optax's
# turns complex and its max() is then meaningless, so there is no oracle on complex trees.
_REAL_ONLY = "jopt's estimate uses Re<a, b> (real); optax's turns complex: no oracle"

for _case in (
    OptimizerCase(
        "adopt",
        jopt.adopt,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        # ADOPT's default b2=0.9999 adapts too slowly for Rosenbrock's walls (distance 0.6
        # after 8000 steps at the best rate); b2=0.99 converges.
        rosenbrock=(dict(learning_rate=3e-3, b2=0.99), 4000, 1e-2),
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
        parity=(
            dict(estim_lr0=1e-2),
            dict(
                learning_rate=0.5,
                betas=(0.8, 0.99),
                weight_decay=0.01,
                safeguard_warmup=True,
                estim_lr0=1e-2,
            ),
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
        # The training iterate y interpolates toward the uniform average x of the base iterates,
        # which lags in Rosenbrock's curved valley (distance ~0.1-0.2 at the best rates).
        rosenbrock=(dict(learning_rate=2e-3), 8000, 0.25),
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
        rosenbrock=(dict(learning_rate=0.03), 8000, 1e-2),
        optax_factory=optax.contrib.schedule_free_adamw,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, warmup_steps=10, b1=0.8, b2=0.99, weight_decay=0.01),
        ),
    ),
    OptimizerCase(
        "mechanize(adam)",
        lambda s_init=1e-6, **kw: jopt.mechanize(jopt.adam(**kw), s_init=s_init),
        # s_init=1e-2: from optax's 1e-6 the learned scale needs >400 steps to grow (and
        # bfloat16 parameters cannot register its first steps).
        quadratic=(dict(learning_rate=0.05, s_init=1e-2), 400, 1e-3),
        # Mechanic learns one global scale online; on Rosenbrock it stalls in the valley
        # (distance 0.39 after 8000 steps around adam(0.1)), so only progress is asserted.
        rosenbrock=(dict(learning_rate=0.1), 8000, 0.5),
        optax_factory=lambda s_init=1e-6, **kw: optax.contrib.mechanize(
            optax.adam(**kw), s_init=s_init
        ),
        # optax's s_init=1e-6 barely moves in 100 random steps.
        parity=(dict(learning_rate=LR, s_init=0.1),),
        skip_trees=(("complex", _REAL_ONLY),),
        signature_compatible=False,
    ),
    OptimizerCase(
        "muon",
        jopt.muon,
        # The contract problems have no matrices: this checks the AdamW side; the Muon side is
        # covered by parity (the dict tree's (2, 4) leaf) and tests/test_contrib_muon.py.
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        optax_factory=optax.contrib.muon,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", beta=0.9, weight_decay=0.1, adam_b1=0.8, nesterov=False),
            dict(learning_rate=LR, ns_steps=3, adaptive=True, adam_learning_rate=0.02),
        ),
        # presets, preconditionings and consistent_rms: tests/test_contrib_muon_sophia.py;
        # optax's weight dimension numbers (non-2-D matrices) are refused in one line.
        signature_compatible=False,
        skip_trees=(("complex", "optax's Newton-Schulz on complex matrices: no jopt counterpart"),),
    ),
    OptimizerCase(
        "lbfgs(linesearch=None)",
        lambda **kw: jopt.lbfgs(linesearch=None, **kw),
        quadratic=(dict(learning_rate=1.0), 50, 1e-6),
        rosenbrock=(dict(learning_rate=0.5), 2000, 1e-2),
        optax_factory=lambda **kw: optax.lbfgs(linesearch=None, **kw),
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, memory_size=3),
        ),
        # optax's default linesearch is an object (never equal); the line searches themselves
        # are tested in tests/test_lbfgs.py.
        signature_compatible=False,
    ),
):
    register(_case)
