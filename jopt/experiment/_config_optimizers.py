"""The factory behind each ``optimizer.name``, and what each optimizer needs from the run.

Most names are the ``jopt.optimizers`` factory itself. A few take what a YAML file cannot hold
(another optimizer, a PRNG key, a callable) or call their learning rate something else; for
those a config-facing factory with plain arguments builds the library one:

* ``polyak_sgd``: ``optimizer.learning_rate`` is its ``max_learning_rate``.
* ``sam``: ``sam(base(learning_rate), chain(normalize(), sgd(rho)), sync_period)`` in opaque
  mode: one train step is one SAM step, the adversarial gradient comes from the step's
  ``grad_fn=`` (so schedules and weight decay apply to whole SAM steps).
* ``schedule_free`` / ``mechanize``: the wrapper around ``base(learning_rate)``.
* ``lbfgs``: ``linesearch`` is a name (``zoom``, ``backtracking`` or ``none``).
* ``noisy_sgd``: ``seed`` (default 0) instead of a key; ``adopt``: no ``clip_value_fn``.

The train step passes every optimizer ``value=`` (the step's loss), ``grad=``, ``value_fn=`` /
``obj_fn=`` (the step's objective on its batch) and ``grad_fn=`` (its gradient); an optimizer
ignores those it does not use (they cost nothing under ``jit``). :func:`check_fits` refuses,
with one line, the configs in which re-evaluating the objective is not well posed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from jopt import optimizers
from jopt.core import chain
from jopt.core.errors import JoptError

__all__ = ["HELPERS", "REEVALUATE", "check_fits", "config_factory"]

# Public functions of jopt.optimizers that are not optimizers (nothing to train by name).
HELPERS = {
    "asgd_averaged_params": "it reads ASGD's averaged parameters from its state",
    "schedule_free_eval_params": "it reads the schedule-free evaluation parameters",
    "normalize": "it is SAM's adversarial step g/||g|| (optimizer: {name: sam} uses it)",
    "scale_by_sophia": "it is sophia's building block (use optimizer: {name: sophia})",
    "hutchinson_estimator_diag_hessian": "it is sophia's Hessian estimator (use sophia)",
}
# Optimizers that evaluate the objective again inside their update (value_fn/obj_fn/grad_fn).
REEVALUATE = ("lbfgs", "sam", "sophia")


def _is_base(name: Any) -> bool:
    """Whether ``name`` is an optimizer a wrapper (sam, schedule_free, mechanize) can take."""
    return (
        isinstance(name, str)
        and name in optimizers.__all__
        and name not in HELPERS
        and name not in ("sam", "schedule_free", "mechanize", "lbfgs")
        and inspect.isfunction(getattr(optimizers, name))
    )


def _base(name: str, learning_rate: Any, where: str) -> Any:
    if not _is_base(name):
        raise JoptError(
            f"{where}: base {name!r} is not an optimizer that takes a learning rate "
            "(e.g. sgd, adam)"
        )
    factory = CONFIG_FACTORIES.get(name) or getattr(optimizers, name)
    return factory(learning_rate)


def polyak_sgd(
    learning_rate: float = 1.0,
    scaling: float = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> Any:
    """``jopt.polyak_sgd`` with ``max_learning_rate = learning_rate``."""
    return optimizers.polyak_sgd(learning_rate, scaling, f_min, eps, variant)


def sam(
    learning_rate: float,
    rho: float = 0.05,
    sync_period: int = 2,
    reset_state: bool = True,
    base: str = "sgd",
) -> Any:
    """``jopt.sam(base(learning_rate), chain(normalize(), sgd(rho)), sync_period,
    reset_state, opaque_mode=True)``: each train step is one SAM step."""
    adv = chain(optimizers.normalize(), optimizers.sgd(rho))
    outer = _base(base, learning_rate, "sam")
    return optimizers.sam(outer, adv, sync_period, reset_state, opaque_mode=True)


def schedule_free(
    learning_rate: float,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    base: str = "sgd",
) -> Any:
    """``jopt.schedule_free(base(learning_rate), learning_rate, b1, weight_lr_power)``."""
    outer = _base(base, learning_rate, "schedule_free")
    return optimizers.schedule_free(outer, learning_rate, b1, weight_lr_power)


def mechanize(
    learning_rate: float = 1.0,
    weight_decay: float = 0.01,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
    base: str = "sgd",
) -> Any:
    """``jopt.mechanize(base(learning_rate), weight_decay, eps, s_init, num_betas)``."""
    outer = _base(base, learning_rate, "mechanize")
    return optimizers.mechanize(outer, weight_decay, eps, s_init, num_betas)


LINESEARCHES = ("zoom", "backtracking", "none")


def lbfgs(
    learning_rate: float = 1.0,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: str = "zoom",
    max_linesearch_steps: int = 20,
) -> Any:
    """``jopt.lbfgs`` with the line search named: ``zoom`` (strong Wolfe, optax's default),
    ``backtracking`` (Armijo) or ``none``."""
    from jopt.transforms import scale_by_backtracking_linesearch, scale_by_zoom_linesearch

    if linesearch not in LINESEARCHES:
        raise JoptError(
            f"lbfgs: linesearch must be one of {', '.join(LINESEARCHES)}, got {linesearch!r}"
        )
    search = {
        "zoom": lambda: scale_by_zoom_linesearch(
            max_linesearch_steps, initial_guess_strategy="one"
        ),
        "backtracking": lambda: scale_by_backtracking_linesearch(max_linesearch_steps),
        "none": lambda: None,
    }[linesearch]()
    return optimizers.lbfgs(learning_rate, memory_size, scale_init_precond, search)


def noisy_sgd(learning_rate: float, eta: float = 0.01, gamma: float = 0.55, seed: int = 0) -> Any:
    """``jopt.noisy_sgd`` with its noise key drawn from ``seed``."""
    return optimizers.noisy_sgd(learning_rate, eta, gamma, seed=seed)


def _without(fn: Callable[..., Any], *names: str) -> Callable[..., Any]:
    """``fn`` with the arguments ``names`` (callables a config cannot give) left at default."""
    sig = inspect.signature(fn)

    def factory(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    factory.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name not in names]
    )
    factory.__name__ = fn.__name__
    factory.__doc__ = fn.__doc__
    return factory


CONFIG_FACTORIES: dict[str, Callable[..., Any]] = {
    "polyak_sgd": polyak_sgd,
    "sam": sam,
    "schedule_free": schedule_free,
    "mechanize": mechanize,
    "lbfgs": lbfgs,
    "noisy_sgd": noisy_sgd,
    "adopt": _without(optimizers.adopt, "clip_value_fn"),
}


def config_factory(name: str) -> Callable[..., Any] | None:
    """The config-facing factory of ``name`` where it differs from ``jopt.optimizers``'."""
    return CONFIG_FACTORIES.get(name)


def check_fits(config: Any) -> None:
    """Refuse, with one line, a config in which the optimizer's re-evaluation of the objective
    (L-BFGS's line search, SAM's adversarial gradient, Sophia's Hessian estimate) would not be
    the objective the step minimizes."""
    opt = config.optimizer
    name = opt.name
    base = opt.kwargs.get("base", "sgd")
    if name in ("sam", "schedule_free", "mechanize") and not _is_base(base):
        raise JoptError(
            f"optimizer.base: {base!r} is not an optimizer that takes a learning rate "
            "(e.g. sgd, adam)"
        )
    search = opt.kwargs.get("linesearch", "zoom")
    if name == "lbfgs" and search not in LINESEARCHES:
        raise JoptError(
            f"optimizer.linesearch must be one of {', '.join(LINESEARCHES)}, got {search!r}"
        )
    if name not in REEVALUATE:
        return
    what = {
        "lbfgs": "lbfgs re-evaluates the objective in its line search",
        "sam": "sam computes its adversarial gradient on the step's batch",
        "sophia": "sophia estimates the Hessian of the step's objective",
    }[name]
    if opt.groups:
        raise JoptError(
            f"optimizer.groups: {what} over all parameters, which a parameter group does "
            "not see; use one group"
        )
    if opt.execution == "fused":
        raise JoptError(
            f"optimizer.execution: fused: {what}, which the tree-form jopt.fuse does not "
            "pass on; use optimizer.execution: auto or per_leaf"
        )
    if config.distributed.data != 1:
        raise JoptError(f"distributed.data: {what}; it is not wired for data-parallel runs yet")
    if name == "sophia":
        return
    if opt.chain:
        raise JoptError(
            f"optimizer.chain: {what}, which the chain's transforms would not see; "
            "drop optimizer.chain"
        )
    if name == "sam":
        return
    why = (
        "a line search needs the same objective at every trial point and every step, "
        "which {} breaks"
    )
    if config.batching.strategy != "full":
        raise JoptError(
            f"batching.strategy: lbfgs needs full (got {config.batching.strategy!r}): "
            + why.format("a new minibatch each step")
        )
    if config.schedule.name != "constant":
        raise JoptError(
            f"schedule.name: lbfgs needs constant (got {config.schedule.name!r}): a schedule "
            "after the line search would change the step it accepted"
        )
    if config.regularization.weight_decay > 0:
        raise JoptError(
            "regularization.weight_decay: lbfgs needs 0: decay added after the line search "
            "would change the step it accepted (use regularization.l2)"
        )
    aug = config.data.augmentation
    if (
        config.regularization.dropout > 0
        or aug.noise_std
        or aug.max_shift
        or aug.flip
        or (aug.mixup_alpha)
    ):
        raise JoptError(
            "regularization.dropout / data.augmentation: lbfgs needs a deterministic "
            "objective: " + why.format("a new dropout mask or augmentation each step")
        )
