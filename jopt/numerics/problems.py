"""Classical optimization test problems, a runner and contour plots of optimizer paths.

``get_problem(name, **options)`` builds a :class:`Problem` from the registry (the experiment
config uses it for ``data.name: rosenbrock`` and friends); :func:`run_problem` runs any
gradient transformation on it as one ``lax.scan`` under one ``jax.jit`` and returns the path;
:func:`plot_paths` draws several paths over the contour of a 2-D problem.

Problems (``x ∈ R^d``):

- ``rosenbrock`` (Rosenbrock 1960), n-D: ``Σ_i 100 (x_{i+1} − x_i²)² + (1 − x_i)²``; minimum
  ``x* = 1``; start ``(−1.2, 1, −1.2, 1, …)``.
- ``beale``: ``(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²``; minimum ``(3, ½)``.
- ``booth``: ``(x + 2y − 7)² + (2x + y − 5)²``; minimum ``(1, 3)``.
- ``himmelblau``: ``(x² + y − 11)² + (x + y² − 7)²``; four minima with ``f = 0``.
- ``ill_conditioned_quadratic``: ``½ xᵀ H x`` with ``H = Q diag(λ) Qᵀ``: the spectrum ``λ`` is given
  (``eigenvalues=[…]``) or log-spaced from 1 to ``condition_number``; ``Q`` is a random
  rotation (``rotate=False`` keeps ``H`` diagonal).
- ``quadratic_deep``: the spectrum of DeepOBS's ``quadratic_deep`` (Schneider et al. 2019):
  ``d = 100``, 90 eigenvalues uniform in (0, 1) and 10 uniform in (30, 60), randomly rotated.
- ``noisy_quadratic``: ``quadratic_deep``'s ``H`` with DeepOBS's sampled loss
  ``½ (x − ξ)ᵀ H (x − ξ)``, ``ξ ~ N(0, noise² I)`` per step: an unbiased gradient ``H(x − ξ)``
  whose noise does not vanish at the minimum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core import apply_updates, call_update
from jopt.core.errors import JoptError

__all__ = [
    "PROBLEMS",
    "Problem",
    "beale",
    "booth",
    "deep_spectrum",
    "get_problem",
    "himmelblau",
    "ill_conditioned_quadratic",
    "list_problems",
    "noisy_quadratic",
    "path_rows",
    "plot_paths",
    "problem_summary",
    "quadratic_deep",
    "rosenbrock",
    "run_problem",
    "steps_to_reach",
]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A test problem.

    Attributes:
        name: registry name.
        fn: ``fn(x[d]) -> scalar``, the (expected) objective.
        x0: default start ``[d]``.
        f_star: the minimum value.
        x_star: one minimiser ``[d]`` (or ``None`` when there are several).
        bounds: ``((x_lo, x_hi), (y_lo, y_hi))`` for contour plots of 2-D problems.
        sample: ``sample(x, key) -> scalar``, a stochastic loss whose gradient is unbiased for
            ``∇fn``; ``None`` for deterministic problems.
        hessian: the constant Hessian of quadratics, else ``None``.
        log_contours: plot log-spaced contour levels (for valleys like Rosenbrock's).
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    x0: np.ndarray
    f_star: float = 0.0
    x_star: np.ndarray | None = None
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None
    sample: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    hessian: np.ndarray | None = None
    log_contours: bool = True

    @property
    def dim(self) -> int:
        return int(self.x0.shape[0])

    def values(self, path: jax.typing.ArrayLike) -> jax.Array:
        """``fn`` along a path ``[T, d] -> [T]``."""
        return jax.vmap(self.fn)(jnp.asarray(path))


def _rosenbrock(x: jax.Array) -> jax.Array:
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _beale(x: jax.Array) -> jax.Array:
    a, b = x[0], x[1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def _booth(x: jax.Array) -> jax.Array:
    return (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2


def _himmelblau(x: jax.Array) -> jax.Array:
    return (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2


def rosenbrock(dim: int = 2) -> Problem:
    """The n-D Rosenbrock function."""
    if not isinstance(dim, int) or dim < 2:
        raise JoptError(f"rosenbrock dim must be an integer >= 2, got {dim!r}")
    x0 = np.tile(np.array([-1.2, 1.0], np.float32), (dim + 1) // 2)[:dim]
    return Problem(
        "rosenbrock", _rosenbrock, x0, 0.0, np.ones(dim, np.float32), ((-2.0, 2.0), (-1.0, 3.0))
    )


def beale() -> Problem:
    return Problem(
        "beale",
        _beale,
        np.array([1.0, 1.5], np.float32),
        0.0,
        np.array([3.0, 0.5], np.float32),
        ((-1.0, 4.5), (-1.5, 2.0)),
    )


def booth() -> Problem:
    return Problem(
        "booth",
        _booth,
        np.array([-5.0, -5.0], np.float32),
        0.0,
        np.array([1.0, 3.0], np.float32),
        ((-10.0, 10.0), (-10.0, 10.0)),
    )


def himmelblau() -> Problem:
    return Problem(
        "himmelblau",
        _himmelblau,
        np.array([0.0, 0.0], np.float32),
        0.0,
        None,
        ((-5.0, 5.0), (-5.0, 5.0)),
    )


def _rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    # QR of a Gaussian matrix, signs fixed: a Haar-distributed orthogonal matrix (Mezzadri 2007).
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def _quadratic_problem(
    name: str, eig: np.ndarray, rotate: bool, seed: int, noise: float = 0.0
) -> Problem:
    dim = eig.shape[0]
    rng = np.random.default_rng(seed)
    q = _rotation(dim, rng) if rotate else np.eye(dim)
    h64 = (q * eig) @ q.T
    h = jnp.asarray(h64, jnp.float32)

    def fn(x: jax.Array) -> jax.Array:
        return 0.5 * jnp.vdot(x, h @ x)

    sample = None
    if noise > 0:

        def sample(x: jax.Array, key: jax.Array) -> jax.Array:
            xi = noise * jax.random.normal(key, x.shape, x.dtype)
            return fn(x - xi)

    bounds = ((-1.5, 1.5), (-1.5, 1.5)) if dim == 2 else None
    return Problem(
        name,
        fn,
        np.ones(dim, np.float32),
        0.0,
        np.zeros(dim, np.float32),
        bounds,
        sample,
        h64.astype(np.float32),
        log_contours=False,
    )


def ill_conditioned_quadratic(
    eigenvalues: Any = None,
    *,
    dim: int = 2,
    condition_number: float = 10.0,
    rotate: bool = True,
    seed: int = 0,
    noise: float = 0.0,
) -> Problem:
    """An ill-conditioned quadratic ``½ xᵀ Q diag(λ) Qᵀ x`` with a chosen spectrum."""
    if eigenvalues is None:
        if not isinstance(dim, int) or dim < 1:
            raise JoptError(f"quadratic dim must be a positive integer, got {dim!r}")
        if not condition_number >= 1:
            raise JoptError(f"condition_number must be >= 1, got {condition_number!r}")
        eig = np.geomspace(1.0, condition_number, dim)
    else:
        eig = np.asarray(eigenvalues, np.float64).reshape(-1)
        if eig.size == 0 or not np.all(np.isfinite(eig)) or np.any(eig < 0):
            raise JoptError("quadratic eigenvalues must be a non-empty list of finite values >= 0")
    if noise < 0:
        raise JoptError(f"noise must be >= 0, got {noise!r}")
    return _quadratic_problem("ill_conditioned_quadratic", eig, rotate, seed, noise)


def deep_spectrum(seed: int = 42) -> np.ndarray:
    """DeepOBS ``quadratic_deep``'s spectrum: 90 eigenvalues in (0, 1), 10 in (30, 60)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)])


def quadratic_deep(seed: int = 42) -> Problem:
    return _quadratic_problem("quadratic_deep", deep_spectrum(seed), True, seed)


def noisy_quadratic(noise: float = 1.0, seed: int = 42) -> Problem:
    if not noise > 0:
        raise JoptError(f"noisy_quadratic noise must be > 0, got {noise!r}")
    return _quadratic_problem("noisy_quadratic", deep_spectrum(seed), True, seed, noise)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "rosenbrock": rosenbrock,
    "beale": beale,
    "booth": booth,
    "himmelblau": himmelblau,
    "ill_conditioned_quadratic": ill_conditioned_quadratic,
    "quadratic_deep": quadratic_deep,
    "noisy_quadratic": noisy_quadratic,
}


def list_problems() -> list[str]:
    return sorted(PROBLEMS)


def get_problem(name: str, *, x0: Any = None, **options: Any) -> Problem:
    """Build a registered problem, e.g. ``get_problem("rosenbrock", dim=10)``.

    ``x0`` replaces the default start point (a list of ``dim`` numbers), so a config can say
    ``data: {name: beale, options: {x0: [1.0, 1.0]}}``.
    """
    if name not in PROBLEMS:
        raise JoptError(f"unknown test problem {name!r}; choose from {', '.join(list_problems())}")
    try:
        problem = PROBLEMS[name](**options)
    except TypeError as e:  # an option the problem does not take
        raise JoptError(f"bad options for test problem {name!r}: {e}") from None
    if x0 is not None:
        start = np.asarray(x0, np.float32)
        if start.shape != (problem.dim,) or not np.all(np.isfinite(start)):
            raise JoptError(f"x0 for {name} must be {problem.dim} finite numbers, got {x0!r}")
        problem = dataclasses.replace(problem, x0=start)
    return problem


def run_problem(
    problem: Problem,
    tx: Any,
    steps: int,
    x0: jax.typing.ArrayLike | None = None,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Run ``tx`` for ``steps`` steps on ``problem``; return the path ``[steps + 1, d]``.

    The whole run is one ``lax.scan`` inside one ``jax.jit`` (compiled per call: ``tx`` and
    the problem are closed over). ``x0`` defaults to ``problem.x0``. Stochastic problems
    need ``key``. The objective value is passed to ``tx.update`` as ``value=`` for
    transforms that use it (line searches, loss-aware schedules).
    """
    if not isinstance(steps, int) or steps < 0:
        raise JoptError(f"steps must be a non-negative integer, got {steps!r}")
    x0 = jnp.asarray(problem.x0 if x0 is None else x0, jnp.float32)
    if x0.shape != (problem.dim,):
        raise JoptError(f"x0 must have shape ({problem.dim},) for {problem.name}, got {x0.shape}")
    if problem.sample is not None and key is None:
        raise JoptError(f"{problem.name} is stochastic: pass key=jax.random.key(seed)")
    key = jax.random.key(0) if key is None else key

    def run(x0: jax.Array, key: jax.Array) -> jax.Array:
        def body(carry, k):
            x, state = carry
            if problem.sample is None:
                value, g = jax.value_and_grad(problem.fn)(x)
            else:
                value, g = jax.value_and_grad(problem.sample)(x, k)
            updates, state = call_update(tx, g, state, x, value=value)
            x = apply_updates(x, updates)
            return (x, state), x

        _, xs = jax.lax.scan(body, (x0, tx.init(x0)), jax.random.split(key, steps))
        return jnp.concatenate([x0[None], xs])

    return jax.jit(run)(x0, key)


def steps_to_reach(
    problem: Problem, path: jax.typing.ArrayLike, threshold: float, *, stay: bool = False
) -> int | None:
    """The first step with ``fn(path[t]) − f_star < threshold``; ``None`` if never.

    With ``stay=True``: the first step from which the gap stays below ``threshold`` to the end
    of the path (a run that touches the threshold and then blows up does not count).
    """
    gap = np.asarray(problem.values(path)) - problem.f_star
    below = gap < threshold  # NaN compares False
    if stay:
        above = np.nonzero(~below)[0]
        first = 0 if above.size == 0 else int(above[-1]) + 1
        return first if first < len(gap) else None
    hit = np.nonzero(below)[0]
    return int(hit[0]) if hit.size else None


def path_rows(problem: Problem, path: jax.typing.ArrayLike, every: int = 1) -> list[dict]:
    """``metrics.jsonl`` rows for a path: ``{"step", "loss", "gap", "x"}`` every ``every`` steps.

    ``gap`` is ``fn(x) − f_star``; the last step is always included.
    """
    path = np.asarray(path)
    values = np.asarray(problem.values(path), np.float64)
    idx = sorted({*range(0, len(path), max(int(every), 1)), len(path) - 1})
    return [
        {
            "step": i,
            "loss": float(values[i]),
            "gap": float(values[i] - problem.f_star),
            "x": [float(v) for v in path[i]],
        }
        for i in idx
    ]


def problem_summary(problem: Problem, path: jax.typing.ArrayLike) -> dict[str, Any]:
    """``summary.json`` fields for a test-problem run: final value, gap and point, and the
    steps until ``f − f*`` first falls below (and stays below) 1e-4 and 1e-8."""
    path = np.asarray(path)
    final = float(problem.fn(jnp.asarray(path[-1])))
    out: dict[str, Any] = {
        "problem": problem.name,
        "steps": len(path) - 1,
        "final_loss": final,
        "final_gap": final - problem.f_star,
        "final_x": [float(v) for v in path[-1]],
    }
    for t in (1e-4, 1e-8):
        out[f"steps_to_{t:g}"] = steps_to_reach(problem, path, t)
        out[f"steps_to_stay_{t:g}"] = steps_to_reach(problem, path, t, stay=True)
    if problem.x_star is not None:
        out["final_distance"] = float(np.linalg.norm(path[-1] - problem.x_star))
    return out


def plot_paths(
    problem: Problem,
    paths: dict[str, jax.typing.ArrayLike],
    file: str | None = None,
    *,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Draw ``{label: path}`` over the contour of a 2-D problem; save a PNG if ``file``.

    Returns the matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if problem.dim != 2 or problem.bounds is None:
        raise JoptError(
            f"plot_paths needs a 2-D problem with bounds; {problem.name} has dim {problem.dim}"
        )
    (x_lo, x_hi), (y_lo, y_hi) = problem.bounds
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, 300), np.linspace(y_lo, y_hi, 300))
    pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), jnp.float32)
    z = np.asarray(jax.vmap(problem.fn)(pts)).reshape(gx.shape) - problem.f_star
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.5, 5.5))
    ax = ax if ax is not None else fig.add_subplot(1, 1, 1)
    if problem.log_contours:
        levels = np.logspace(np.log10(max(z.min(), 1e-3)), np.log10(z.max()), 25)
        ax.contour(
            gx,
            gy,
            z,
            levels=levels,
            cmap="viridis",
            norm=matplotlib.colors.LogNorm(),
            linewidths=0.7,
        )
    else:
        ax.contour(gx, gy, z, levels=25, cmap="viridis", linewidths=0.7)
    styles = ("-", "--", "-.", ":")  # overlapping paths stay distinguishable
    for i, (label, path) in enumerate(paths.items()):
        p = np.asarray(path)
        line = ax.plot(p[:, 0], p[:, 1], styles[i % 4], lw=1.6, label=label)[0]
        ax.plot(p[0, 0], p[0, 1], "o", color=line.get_color(), ms=5)
        ax.plot(p[-1, 0], p[-1, 1], "x", color=line.get_color(), ms=7, mew=2)
    if problem.x_star is not None:
        ax.plot(*problem.x_star, "*", color="red", ms=13, label="minimum")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or problem.name)
    ax.legend(loc="best", fontsize=8)
    if file is not None:
        fig.savefig(file, dpi=120, bbox_inches="tight")
    return fig
