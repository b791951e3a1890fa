"""Registry of every optimizer, for the contract test and the optax parity test.

One :class:`OptimizerCase` per optimizer. ``tests/test_optimizers_contract.py`` crosses every
entry with the contract (convergence on a quadratic and on Rosenbrock, jit, dtypes, extra
arguments, one trace), and ``tests/test_optimizers_parity.py`` runs every entry that names an
optax counterpart against it. Adding an entry is all it takes to test an optimizer; other
areas (e.g. the combinators of issue 3) add theirs with :func:`register` at the bottom of this
file, or in their own module imported at the end of it.

A factory is called as ``factory(**kwargs)``; a case whose factory needs more (a wrapper such
as ``jopt.with_hparams(jopt.adam)``) passes a ``functools.partial`` or a lambda.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

import jopt


@dataclasses.dataclass(frozen=True)
class OptimizerCase:
    """One optimizer under test.

    Attributes:
        name: unique id (used in test ids).
        factory: ``factory(**kwargs) -> GradientTransformation``.
        quadratic: kwargs for the quadratic problem, and the step count and the tolerance: the
            final loss must be ``<= tol * initial loss``.
        rosenbrock: the same for 2-D Rosenbrock from (-1.2, 1); the tolerance there is on the
            distance to the minimum (1, 1).
        optax_factory: optax's optimizer of the same name (``None``: no parity test).
        parity: hyperparameter sets (kwargs for both factories) for the parity test; the first
            is optax's defaults. ``learning_rate`` may be a ``(jopt_schedule, optax_schedule)``
            pair, to check the schedule path.
        signature_compatible: check that the jopt factory's signature starts with optax's
            parameters (same names, order and defaults).
        skip_trees: ``(tree name, reason)`` pairs of ``tests/pytrees.py`` that the optax parity
            matrix leaves out because the *oracle* differs there (the contract test still runs
            every tree).
    """

    name: str
    factory: Callable[..., Any]
    quadratic: tuple[dict[str, Any], int, float]
    rosenbrock: tuple[dict[str, Any], int, float]
    optax_factory: Callable[..., Any] | None = None
    parity: tuple[dict[str, Any], ...] = ()
    signature_compatible: bool = True
    skip_trees: tuple[tuple[str, str], ...] = ()


REGISTRY: dict[str, OptimizerCase] = {}


def register(case: OptimizerCase) -> OptimizerCase:
    """Add ``case`` to the registry (names must be unique)."""
    if case.name in REGISTRY:
        raise ValueError(f"registry: duplicate optimizer name {case.name!r}")
    REGISTRY[case.name] = case
    return case


def _sched():
    # The same warm-up/cosine schedule in both libraries, to check the schedule path.
    return (
        jopt.schedules.warmup_cosine_decay(0.0, 0.02, 10, 100, 1e-3),
        optax.warmup_cosine_decay_schedule(0.0, 0.02, 10, 100, 1e-3),
    )


LR = 0.01  # parity learning rate: large enough that 100 steps move the params visibly

# Convergence settings are per optimizer and honest: steps and tolerances were chosen so that
# each optimizer gets close to the optimum with a sensible learning rate, with margin.
register(
    OptimizerCase(
        "sgd",
        jopt.sgd,
        quadratic=(dict(learning_rate=0.05), 200, 1e-6),
        rosenbrock=(dict(learning_rate=1e-3, momentum=0.9), 4000, 1e-2),
        optax_factory=optax.sgd,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, momentum=0.9),
            dict(learning_rate="sched", momentum=0.8, nesterov=True),
        ),
    )
)
register(
    OptimizerCase(
        "rmsprop",
        jopt.rmsprop,
        quadratic=(dict(learning_rate=0.01), 400, 1e-3),
        rosenbrock=(dict(learning_rate=1e-3, momentum=0.9), 3000, 1e-2),
        optax_factory=optax.rmsprop,
        parity=(
            dict(learning_rate=LR),
            dict(
                learning_rate=LR,
                decay=0.8,
                eps=1e-4,
                initial_scale=0.5,
                eps_in_sqrt=False,
                centered=True,
                momentum=0.9,
                nesterov=True,
                bias_correction=True,
            ),
            dict(learning_rate="sched", centered=True, bias_correction=True),
            dict(learning_rate=LR, momentum=0.5, bias_correction=True),
        ),
    )
)
register(
    OptimizerCase(
        "adam",
        jopt.adam,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        optax_factory=optax.adam,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
            dict(learning_rate=LR, b1=0.5, nesterov=True),
        ),
    )
)
register(
    OptimizerCase(
        "adamw",
        jopt.adamw,
        quadratic=(dict(learning_rate=0.05, weight_decay=0.0), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02, weight_decay=0.0), 3000, 1e-2),
        optax_factory=optax.adamw,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, b1=0.8, weight_decay=0.1, nesterov=True),
            dict(learning_rate="sched", weight_decay=0.05, mask={"a": True, "b": False}),
        ),
    )
)
register(
    OptimizerCase(
        "amsgrad",
        jopt.amsgrad,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        # AMSGrad divides by the largest second moment seen, i.e. by the steep walls of the first
        # steps, so it needs a large learning rate and approaches the minimum slowly.
        rosenbrock=(dict(learning_rate=0.3), 4000, 5e-2),
        optax_factory=optax.amsgrad,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, b1=0.8, b2=0.9, eps=1e-5),
            dict(learning_rate="sched", bias_correction_mu=False, bias_correction_nu=False),
        ),
    )
)
register(
    OptimizerCase(
        "adagrad",
        jopt.adagrad,
        quadratic=(dict(learning_rate=0.5), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.5), 8000, 1e-2),
        optax_factory=optax.adagrad,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate=LR, initial_accumulator_value=0.0, eps=1e-3),
        ),
    )
)
register(
    OptimizerCase(
        "adadelta",
        jopt.adadelta,
        quadratic=(dict(learning_rate=20.0), 1000, 1e-3),
        # With a constant rate Adadelta stalls in the valley (loss ~0.5 after 20k steps); its
        # unit-corrected step needs an annealed learning rate to settle.
        rosenbrock=(
            dict(learning_rate=jopt.schedules.cosine_decay(1.0, 8000), rho=0.95),
            8000,
            1e-2,
        ),
        optax_factory=optax.adadelta,
        parity=(
            dict(learning_rate=1.0),
            dict(learning_rate=1.0, rho=0.5, eps=1e-4, weight_decay=0.1),
            dict(
                learning_rate="sched", weight_decay=0.1, weight_decay_mask={"a": False, "b": True}
            ),
        ),
        skip_trees=(("complex", "optax.scale_by_adadelta squares g, not |g|^2 (jopt uses |g|^2)"),),
    )
)
register(
    OptimizerCase(
        "adamax",
        jopt.adamax,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 6000, 1e-2),
        optax_factory=optax.adamax,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, b2=0.99, eps=1e-4),
        ),
    )
)
register(
    OptimizerCase(
        "nadam",
        jopt.nadam,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        optax_factory=optax.nadam,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.7, b2=0.95, eps_root=1e-8),
        ),
    )
)
register(
    OptimizerCase(
        "radam",
        jopt.radam,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        # RAdam's first steps are un-normalised momentum steps (rho_t < threshold), so a plain
        # rate large enough for the adaptive phase blows up on Rosenbrock's walls: warm up.
        rosenbrock=(
            dict(learning_rate=jopt.schedules.warmup_cosine_decay(0.0, 0.05, 500, 6000, 1e-4)),
            6000,
            1e-2,
        ),
        optax_factory=optax.radam,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, b2=0.99, threshold=4.0, nesterov=True),
        ),
    )
)
register(
    OptimizerCase(
        "lion",
        jopt.lion,
        quadratic=(dict(learning_rate=3e-3, weight_decay=0.0), 1000, 1e-3),
        rosenbrock=(dict(learning_rate=1e-3, weight_decay=0.0), 6000, 1e-2),
        optax_factory=optax.lion,
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.95, b2=0.98, weight_decay=0.1),
        ),
    )
)
register(
    OptimizerCase(
        "lamb",
        jopt.lamb,
        quadratic=(dict(learning_rate=0.02), 600, 1e-3),
        # LAMB's step has norm lr * ||w|| per layer, so it needs a decaying rate to settle.
        rosenbrock=(dict(learning_rate=jopt.schedules.cosine_decay(0.02, 4000)), 4000, 1e-2),
        optax_factory=optax.lamb,
        parity=(
            dict(learning_rate=LR),
            dict(
                learning_rate="sched",
                b1=0.8,
                eps=1e-4,
                weight_decay=0.01,
                mask={"a": True, "b": False},
            ),
        ),
    )
)


def resolve(kwargs: dict[str, Any], side: str) -> dict[str, Any]:
    """The kwargs of a parity set for ``side`` (``"jopt"`` or ``"optax"``)."""
    out = dict(kwargs)
    if out.get("learning_rate") == "sched":
        out["learning_rate"] = _sched()[0 if side == "jopt" else 1]
    return out


# --- entries from other areas (issue 3 combinators, ...) go below this line ---

# Issue 3 combinators: each wraps a registered optimizer, so it must meet the same contract
# (and, where it should not change the maths, match optax's own wrapper or optimizer).


# optax.inject_hyperparams casts its hyperparameters to a complex dtype on a complex/real tree,
# and its Adam state then changes dtype inside the scan; jopt keeps float32 hyperparameters.
_INJECT_COMPLEX = "the oracle optax.inject_hyperparams fails on mixed complex/real trees"


def _with_hparams_adam(**kw):
    return jopt.with_hparams(jopt.adam)(**kw)


def _groups_adam(learning_rate, **kw):
    # Two groups (the rule matches "w" only) that both run Adam; "w" through an override.
    base = jopt.with_hparams(jopt.adam)(learning_rate, **kw)
    return jopt.groups([("w", "w", {"lr_mult": 1.0})], default=base)


for _case in (
    OptimizerCase(
        "with_hparams(adam)",
        _with_hparams_adam,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        optax_factory=lambda **kw: optax.inject_hyperparams(optax.adam)(**kw),
        parity=(
            dict(learning_rate=LR),
            dict(learning_rate="sched", b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
        ),
        signature_compatible=False,
        skip_trees=(("complex", _INJECT_COMPLEX),),
    ),
    OptimizerCase(
        "groups(adam)",
        _groups_adam,
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        # Array hyperparameters round 1 - b1 in float32, as optax's own wrapper does.
        optax_factory=lambda **kw: optax.inject_hyperparams(optax.adam)(**kw),
        parity=(dict(learning_rate=LR),),
        signature_compatible=False,
        skip_trees=(("complex", _INJECT_COMPLEX),),
    ),
    OptimizerCase(
        "accumulate(sgd, 2)",
        lambda **kw: jopt.accumulate(jopt.sgd(**kw), 2),
        quadratic=(dict(learning_rate=0.05), 400, 1e-6),
        rosenbrock=(dict(learning_rate=1e-3, momentum=0.9), 8000, 1e-2),
        signature_compatible=False,
    ),
    OptimizerCase(
        "skip_nonfinite(adam)",
        lambda **kw: jopt.skip_nonfinite(jopt.adam(**kw), max_consecutive=3),
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        optax_factory=lambda **kw: optax.apply_if_finite(optax.adam(**kw), 3),
        parity=(dict(learning_rate=LR),),
        signature_compatible=False,
    ),
    OptimizerCase(
        "with_lookahead(sgd)",
        lambda **kw: jopt.with_lookahead(jopt.sgd(**kw), sync_period=5, slow_step_size=0.5),
        quadratic=(dict(learning_rate=0.05), 400, 1e-6),
        rosenbrock=(dict(learning_rate=1e-3, momentum=0.9), 8000, 1e-2),
        signature_compatible=False,
    ),
    OptimizerCase(
        "with_norms(with_param_ema(adam))",
        lambda **kw: jopt.with_norms(jopt.with_param_ema(jopt.adam(**kw), decay=0.9)),
        quadratic=(dict(learning_rate=0.05), 400, 1e-4),
        rosenbrock=(dict(learning_rate=0.02), 3000, 1e-2),
        optax_factory=optax.adam,
        parity=(dict(learning_rate=LR),),
        signature_compatible=False,
    ),
):
    register(_case)

# issue 15: optax's main-namespace optimizers (registry_catalogue), contrib and torch/Keras
# optimizers (registry_contrib)
import registry_catalogue  # noqa: E402, F401
import registry_contrib  # noqa: E402, F401
