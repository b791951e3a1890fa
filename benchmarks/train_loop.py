"""Steady-state train-loop speed: jopt's scan-fused epochs vs the idiomatic flax loop.

Model: digits MLP 64-128-10 (ReLU), Adam(1e-3), batch 32, standardized digits with a stratified
25 % test split (1347 training examples, 42 steps per epoch, remainder dropped).

  (a)  jopt: ``make_train_epoch`` jitted once with the state donated; one dispatch per epoch,
       shuffling and batching on device under ``lax.scan``;
  (a') the same with ``optax.adam`` instead of ``jopt.adam`` (isolates the loop from the optimizer);
  (b)  the idiomatic flax loop (flax ``examples/mnist`` style): ``flax.training.train_state``
       + ``optax.adam``, a jitted step called from Python for each batch, the permutation and
       batch slicing on the host with numpy;
  (c)  compile time of (a)'s epoch and of (b)'s step.

Each variant is warmed up (compiled and run once) before timing; every timed region ends with
``block_until_ready``. Repeats are interleaved (a, a', b, a, a', b, ...) so background load hits
all variants alike, and the median over repeats is reported.

Usage: ``python benchmarks/train_loop.py [--epochs 20] [--repeats 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

import jopt
from jopt.data import Batching, load_dataset
from jopt.models import make_model
from jopt.train import LossSpec, init_train_state, make_train_epoch


def _scan_runner(model, tx, ds, batching, key):
    spec = LossSpec(task="classification", num_classes=10)
    epoch = jax.jit(make_train_epoch(model, tx, spec, batching), donate_argnums=0)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    state = init_train_state(model, tx, x[:1], key)
    t = time.perf_counter()
    compiled = epoch.lower(state, x, y).compile()
    compile_s = time.perf_counter() - t
    box = {"state": compiled(state, x, y)[0]}  # warm-up epoch

    def run(epochs: int) -> float:
        t = time.perf_counter()
        s = box["state"]
        for _ in range(epochs):
            s, _ = compiled(s, x, y)
        jax.block_until_ready(s)
        box["state"] = s
        return time.perf_counter() - t

    return run, compile_s


def _flax_runner(model, ds, batch_size, key):
    """The loop of flax's MNIST example: host-side permutation, one jitted step per batch."""
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(key, ds.x_train[:1])["params"], tx=optax.adam(1e-3)
    )

    @jax.jit
    def train_step(state, images, labels):
        def loss_fn(params):
            logits = state.apply_fn({"params": params}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    x, y = ds.x_train, ds.y_train
    steps = len(y) // batch_size
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    train_step.lower(state, x[:batch_size], y[:batch_size]).compile()
    compile_s = time.perf_counter() - t
    box = {"state": state}

    def one_epoch(s):
        perms = rng.permutation(len(y))[: steps * batch_size].reshape(steps, batch_size)
        for perm in perms:
            s, _ = train_step(s, x[perm], y[perm])
        return s

    box["state"] = one_epoch(state)  # warm-up (compiles the jit cache entry)

    def run(epochs: int) -> float:
        t = time.perf_counter()
        s = box["state"]
        for _ in range(epochs):
            s = one_epoch(s)
        jax.block_until_ready(s)
        box["state"] = s
        return time.perf_counter() - t

    return run, compile_s


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20, help="epochs per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", default=None, help="also write the report here")
    args = ap.parse_args(argv)

    ds = load_dataset("digits", seed=0, val_fraction=0.0, test_fraction=0.25)
    model = make_model("mlp", num_outputs=10, hidden=[128])
    batching = Batching("minibatch", args.batch_size)
    steps = batching.steps_per_epoch(len(ds.y_train))
    key = jax.random.key(0)
    runners = {}
    runners["a_jopt_scan"], c_a = _scan_runner(model, jopt.adam(1e-3), ds, batching, key)
    runners["a_scan_optax_adam"], c_a2 = _scan_runner(model, optax.adam(1e-3), ds, batching, key)
    runners["b_flax_loop"], c_b = _flax_runner(model, ds, args.batch_size, key)
    times = {k: [] for k in runners}
    for _ in range(args.repeats):
        for k, run in runners.items():
            times[k].append(run(args.epochs) / (args.epochs * steps) * 1e6)
    us = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "benchmark": "train_loop",
        "model": "mlp 64-128-10 relu",
        "optimizer": "adam(1e-3)",
        "batch_size": args.batch_size,
        "steps_per_epoch": steps,
        "epochs_per_repeat": args.epochs,
        "repeats": args.repeats,
        "us_per_step_median": us,
        "us_per_step_all": times,
        "compile_s": {"a_jopt_epoch": c_a, "a_optax_epoch": c_a2, "b_flax_step": c_b},
        "speedup_b_over_a": us["b_flax_loop"] / us["a_jopt_scan"],
        "backend": jax.default_backend(),
        "devices": str(jax.devices()),
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }
    print(
        f"digits MLP 64-128-10, Adam, batch {args.batch_size}, {steps} steps/epoch, "
        f"{jax.default_backend()}, load average {report['load_average'][0]:.1f}"
    )
    for k, v in us.items():
        print(f"  {k:20s} {v:9.1f} us/step   (all: {', '.join(f'{t:.0f}' for t in times[k])})")
    print(f"  compile: jopt epoch {c_a:.2f} s, flax step {c_b:.2f} s")
    print(f"  speed-up (b)/(a): {report['speedup_b_over_a']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
