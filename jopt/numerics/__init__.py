"""Numerical analysis: gradient checks, Hessian curvature, step-size stability, loss
landscapes, classical test problems and the learning-rate finder.

Curvature tools take ``loss_fn(params)`` or ``loss_fn(params, batch)`` with ``batches``
stacked on a leading axis (see :func:`stack_batches`); they are pure and jit-able.
"""

from jopt.numerics import problems
from jopt.numerics._batches import (
    dataset_grad,
    dataset_loss,
    flax_loss_fn,
    hvp,
    stack_batches,
)
from jopt.numerics._curvature import (
    Eigenpairs,
    SpectralDensity,
    TraceEstimate,
    density_mass,
    density_on_grid,
    hutchinson_trace,
    lanczos,
    sharpness,
    spectral_density,
    top_eigenvalues,
)
from jopt.numerics._gradcheck import GradCheckResult, grad_check
from jopt.numerics._landscape import (
    filter_normalized_direction,
    interpolate_1d,
    plot_interpolation,
    plot_surface,
    surface_2d,
)
from jopt.numerics._lr_find import (
    LRFindResult,
    analyse_lr_curve,
    exponential_lrs,
    lr_find,
    lr_find_run,
    lr_table_schedule,
    plot_lr_find,
    write_lr_find,
)
from jopt.numerics._plots import plot_sharpness, plot_spectral_density
from jopt.numerics._problem_compare import plot_problem_paths
from jopt.numerics._stability import gd_contraction, max_stable_lr, stability_bound
from jopt.numerics.problems import (
    PROBLEMS,
    Problem,
    get_problem,
    list_problems,
    path_rows,
    plot_paths,
    problem_summary,
    run_problem,
    steps_to_reach,
)

__all__ = [
    "PROBLEMS",
    "Eigenpairs",
    "GradCheckResult",
    "LRFindResult",
    "Problem",
    "SpectralDensity",
    "TraceEstimate",
    "analyse_lr_curve",
    "dataset_grad",
    "dataset_loss",
    "density_mass",
    "density_on_grid",
    "exponential_lrs",
    "filter_normalized_direction",
    "flax_loss_fn",
    "gd_contraction",
    "get_problem",
    "grad_check",
    "hutchinson_trace",
    "hvp",
    "interpolate_1d",
    "lanczos",
    "list_problems",
    "lr_find",
    "lr_find_run",
    "lr_table_schedule",
    "max_stable_lr",
    "path_rows",
    "plot_interpolation",
    "plot_lr_find",
    "plot_paths",
    "plot_problem_paths",
    "plot_sharpness",
    "plot_spectral_density",
    "plot_surface",
    "problem_summary",
    "problems",
    "run_problem",
    "sharpness",
    "spectral_density",
    "stability_bound",
    "stack_batches",
    "steps_to_reach",
    "surface_2d",
    "top_eigenvalues",
    "write_lr_find",
]
