"""Classical test problems: values at known minima, the runner, the path plot."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import numerics as nm
from jopt.numerics import problems


@pytest.mark.parametrize("name", ["rosenbrock", "beale", "booth", "himmelblau"])
def test_known_minima(name):
    p = nm.get_problem(name)
    minima = {
        "himmelblau": [
            [3.0, 2.0],
            [-2.805118, 3.131312],
            [-3.779310, -3.283186],
            [3.584428, -1.848126],
        ]
    }.get(name, [p.x_star])
    for x in minima:
        x = jnp.asarray(x, jnp.float32)
        assert float(p.fn(x)) == pytest.approx(p.f_star, abs=1e-8)
        assert float(jnp.linalg.norm(jax.grad(p.fn)(x))) < 1e-3
    assert float(p.fn(jnp.asarray(p.x0))) > p.f_star + 1.0


def test_rosenbrock_nd_and_quadratic_spectra():
    p = nm.get_problem("rosenbrock", dim=5)
    np.testing.assert_allclose(p.x0, [-1.2, 1.0, -1.2, 1.0, -1.2], rtol=1e-6)
    assert float(p.fn(jnp.ones(5))) == 0.0
    q = nm.get_problem("ill_conditioned_quadratic", eigenvalues=[1.0, 2.0, 50.0], seed=1)
    np.testing.assert_allclose(np.linalg.eigvalsh(q.hessian), [1, 2, 50], rtol=1e-5)
    np.testing.assert_allclose(jax.hessian(q.fn)(jnp.ones(3)), q.hessian, rtol=1e-5, atol=1e-5)
    d = nm.get_problem("quadratic_deep")
    eig = np.linalg.eigvalsh(d.hessian.astype(np.float64))
    assert d.dim == 100 and np.sum(eig < 1) == 90 and np.sum((eig > 30) & (eig < 60)) == 10


def test_noisy_quadratic_gradient_is_unbiased():
    p = nm.get_problem("noisy_quadratic", noise=0.5)
    x = jnp.ones(100)
    keys = jax.random.split(jax.random.key(0), 400)
    g = jax.jit(jax.vmap(jax.grad(p.sample), in_axes=(None, 0)))(x, keys).mean(0)
    exact = jax.grad(p.fn)(x)
    assert float(jnp.linalg.norm(g - exact) / jnp.linalg.norm(exact)) < 0.1
    path = nm.run_problem(p, jopt.sgd(0.01), 200, key=jax.random.key(1))
    assert path.shape == (201, 100)
    assert float(p.fn(path[-1])) < 0.2 * float(p.fn(path[0]))  # progress despite the noise


@pytest.fixture(scope="module")
def rosenbrock_paths():
    p = nm.get_problem("rosenbrock")
    steps = 25_000
    return p, {
        "GD lr=1e-3": nm.run_problem(p, jopt.sgd(1e-3), steps),
        "momentum 0.9 lr=1e-3": nm.run_problem(p, jopt.sgd(1e-3, momentum=0.9), steps),
    }


def test_momentum_reaches_1e_8_far_sooner_than_gd_on_rosenbrock(rosenbrock_paths, tmp_path):
    p, paths = rosenbrock_paths
    np.testing.assert_allclose(paths["GD lr=1e-3"][0], [-1.2, 1.0])
    gd = problems.steps_to_reach(p, paths["GD lr=1e-3"], 1e-8)
    mom = problems.steps_to_reach(p, paths["momentum 0.9 lr=1e-3"], 1e-8)
    # Measured: GD 20 799 steps, momentum 1 940 (float32, CPU). Heavy ball with μ = 0.9
    # multiplies the effective step along the flat valley by 1/(1 − μ) = 10.
    assert gd is not None and mom is not None
    assert 15_000 < gd < 25_000 and mom < 3_000
    assert mom * 5 < gd
    out = tmp_path / "rosenbrock_paths.png"
    nm.plot_paths(p, paths, str(out))
    assert out.stat().st_size > 10_000


def test_problem_bad_input():
    with pytest.raises(jopt.JoptError, match="unknown test problem 'rosenbrok'; choose from"):
        nm.get_problem("rosenbrok")
    with pytest.raises(jopt.JoptError, match="bad options"):
        nm.get_problem("beale", dim=3)
    with pytest.raises(jopt.JoptError, match="dim must be"):
        nm.get_problem("rosenbrock", dim=1)
    with pytest.raises(jopt.JoptError, match="eigenvalues"):
        nm.get_problem("ill_conditioned_quadratic", eigenvalues=[1.0, -1.0])
    p = nm.get_problem("booth")
    with pytest.raises(jopt.JoptError, match="x0 must have shape"):
        nm.run_problem(p, jopt.sgd(0.1), 3, x0=[1.0, 2.0, 3.0])
    with pytest.raises(jopt.JoptError, match="steps"):
        nm.run_problem(p, jopt.sgd(0.1), -1)
    with pytest.raises(jopt.JoptError, match="stochastic"):
        nm.run_problem(nm.get_problem("noisy_quadratic"), jopt.sgd(0.1), 3)
    with pytest.raises(jopt.JoptError, match="2-D"):
        nm.plot_paths(nm.get_problem("rosenbrock", dim=3), {})


def test_path_rows_and_steps_to_reach_stay():
    p = nm.get_problem("booth")
    path = np.array([[-5.0, -5.0], [1.0, 3.0], [1.5, 3.0], [1.0, 3.0], [1.0, 3.0]], np.float32)
    assert problems.steps_to_reach(p, path, 1e-6) == 1
    assert problems.steps_to_reach(p, path, 1e-6, stay=True) == 3  # step 2 left the minimum
    assert problems.steps_to_reach(p, path[:3], 1e-6, stay=True) is None
    rows = nm.path_rows(p, path, every=3)
    assert [r["step"] for r in rows] == [0, 3, 4]  # the last step is always included
    assert rows[0]["loss"] == pytest.approx(884.0) and rows[1]["gap"] == 0.0
    assert rows[1]["x"] == [1.0, 3.0]
    summary = nm.problem_summary(p, path)
    assert summary["steps"] == 4 and summary["final_gap"] == 0.0
    assert summary["steps_to_1e-08"] == 1 and summary["steps_to_stay_1e-08"] == 3
    assert summary["final_distance"] == 0.0


def test_compare_overlay_of_problem_runs(tmp_path):
    from jopt.cli import main
    from jopt.experiment import load_config, plot_problem_runs, problem_path_from_config

    def run(name, opt, data="{name: rosenbrock}", steps=2000):
        f = tmp_path / f"{name}.yaml"
        f.write_text(
            f"name: {name}\nproblem: {data}\noptimizer: {opt}\ntrain: {{steps: {steps}}}\n"
            f"output: {{runs_dir: {tmp_path / name}, plots: false}}\n"
        )
        assert main(["run", str(f), "--no-progress"]) == 0
        (run_dir,) = (tmp_path / name).iterdir()
        return str(run_dir)

    mom = run("mom", "{name: sgd, learning_rate: 0.001, momentum: 0.9}")
    # The recomputed path is the runner's path: same optimizer, same final point.
    problem, path = problem_path_from_config(load_config(f"{mom}/config.yaml"))
    # 1940 steps on CPU, 1939 on an H200: float32 rounding differs between platforms.
    assert path.shape == (2001, 2) and abs(problems.steps_to_reach(problem, path, 1e-8) - 1940) <= 3
    with open(f"{mom}/summary.json") as f:
        summary = json.load(f)
    np.testing.assert_allclose(summary["x_final"], path[-1], rtol=1e-6)
    adam = run("adam", "{name: adam, learning_rate: 0.03}")
    written = plot_problem_runs([mom, adam], str(tmp_path / "cmp"))
    assert [os.path.basename(w) for w in written] == ["paths.png", "gaps.png"]
    assert all(os.path.getsize(w) > 10_000 for w in written)
    other = run("beale", "{name: sgd, learning_rate: 0.01}", data="{name: beale}", steps=5)
    with pytest.raises(jopt.JoptError, match="different problems"):
        plot_problem_runs([mom, other], str(tmp_path / "cmp2"))
    with pytest.raises(jopt.JoptError, match="x0 for booth"):
        nm.get_problem("booth", x0=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(nm.get_problem("beale", x0=[1, 1]).x0, [1.0, 1.0])
