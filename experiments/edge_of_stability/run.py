"""Edge of stability at small scale: full-batch GD on a tanh MLP, sharpness against 2/lr.

Cohen et al. 2021 ("Gradient Descent on Neural Networks Typically Occurs at the Edge of
Stability") train with full-batch GD and track the sharpness λ_max of the training-loss
Hessian. They report *progressive sharpening* (λ_max grows while λ_max < 2/η) and then the
*edge of stability* (λ_max rises to 2/η and hovers there while the loss keeps falling,
non-monotonically). This script repeats their setup at a scale that fits a shared CPU:

- data: the first N examples of sklearn digits (jopt.data, standardized), 10 classes;
- model: jopt.models MLP, hidden (64, 64), tanh; loss: ½‖f(x) − onehot(y)‖² (their MSE);
- optimizer: jopt.sgd(η) on the full batch, for several η;
- every K steps: λ_max by jopt.numerics.sharpness (Lanczos, 20 steps) on the full batch.

    python experiments/edge_of_stability/run.py      # a few minutes on 2 CPU cores

Writes ``sharpness.png``, ``results.json`` and ``run.log`` next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jopt
from jopt import numerics as nm
from jopt.data import load_dataset
from jopt.models import make_model

HERE = os.path.dirname(os.path.abspath(__file__))


def setup(n: int, seed: int):
    ds = load_dataset(
        "digits", seed=seed, val_fraction=0.0, test_fraction=0.2, preprocess="standardize"
    )
    x = jnp.asarray(ds.x_train[:n].reshape(n, -1), jnp.float32)
    y = jnp.asarray(ds.y_train[:n], jnp.int32)
    model = make_model("mlp", num_outputs=10, hidden=(64, 64), activation="tanh")
    params = model.init(jax.random.key(seed), x[:1], train=False)["params"]
    loss_fn = nm.flax_loss_fn(model, "mse", train=False)
    return model, params, loss_fn, (x, y)


def train(loss_fn, params, batch, lr: float, steps: int, every: int, key):
    tx = jopt.sgd(lr)
    grad = jax.value_and_grad(loss_fn)
    batches = jax.tree.map(lambda a: a[None], batch)  # one full batch

    @jax.jit
    def chunk(params, opt_state):
        def body(carry, _):
            p, s = carry
            loss, g = grad(p, batch)
            u, s = tx.update(g, s, p)
            return (jopt.apply_updates(p, u), s), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), None, every)
        return params, opt_state, losses

    sharp = jax.jit(lambda p, k: nm.sharpness(loss_fn, p, batches, key=k, num_iters=20))
    opt_state = tx.init(params)
    rows, losses = [], []
    for i in range(steps // every + 1):
        lam = float(sharp(params, jax.random.fold_in(key, i)))
        rows.append({"step": i * every, "sharpness": lam, "loss": float(loss_fn(params, batch))})
        if i == steps // every or not np.isfinite(rows[-1]["loss"]):
            break
        params, opt_state, ls = chunk(params, opt_state)
        losses.extend(np.asarray(ls).tolist())
    return rows, losses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    _, params, loss_fn, batch = setup(args.n, args.seed)
    results = {"config": vars(args), "runs": {}}
    for lr in args.lrs:
        t0 = time.perf_counter()
        rows, losses = train(
            loss_fn, params, batch, lr, args.steps, args.every, jax.random.key(args.seed + 1)
        )
        lam = np.array([r["sharpness"] for r in rows])
        bound = 2.0 / lr
        first = next((r["step"] for r in rows if r["sharpness"] >= 0.9 * bound), None)
        late = lam[len(lam) // 2 :]
        summary = {
            "stability_bound": bound,
            "sharpness_init": float(lam[0]),
            "sharpness_max": float(lam.max()),
            "sharpness_final": float(lam[-1]),
            "late_mean_over_bound": float(late.mean() / bound),
            "first_step_above_0.9_bound": first,
            "loss_init": rows[0]["loss"],
            "loss_final": rows[-1]["loss"],
            "loss_increases": int(np.sum(np.diff(np.asarray(losses)) > 0)),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        results["runs"][str(lr)] = {"summary": summary, "rows": rows, "losses": losses}
        print(
            f"lr={lr:g} 2/lr={bound:.1f} "
            + " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
            ),
            flush=True,
        )
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f)
    plot(results, os.path.join(HERE, "sharpness.png"))


def plot(results: dict, file: str) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (lr, run) in enumerate(results["runs"].items()):
        steps = [r["step"] for r in run["rows"]]
        lam = [r["sharpness"] for r in run["rows"]]
        color = f"C{i}"
        ax1.plot(steps, lam, color=color, lw=1.6, label=f"η = {float(lr):g}")
        ax1.axhline(2 / float(lr), color=color, ls="--", lw=1)
        ax2.plot(
            np.arange(len(run["losses"])),
            run["losses"],
            color=color,
            lw=1,
            label=f"η = {float(lr):g}",
        )
    ax1.set_xlabel("step")
    ax1.set_ylabel("sharpness λ_max  (dashed: 2/η)")
    ax1.set_title("full-batch GD: sharpness against the stability bound")
    ax1.legend(fontsize=8)
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss (MSE)")
    ax2.set_title("training loss")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
