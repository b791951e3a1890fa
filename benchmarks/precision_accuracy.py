"""bf16_mixed against float32 accuracy (issue 17), at the shipped configs' full scale on CPU.

Runs, with :func:`jopt.train.fit` and public APIs, the quickstart (digits MLP 64-128-10, dropout
0.2, Adam 2e-3 with cosine decay, batch 32, 60 epochs; configs/quickstart.yaml) and the MNIST-1D
CNN (3 x 25 channels, kernel 5, Adam 1e-2, batch 100; configs/mnist1d_cnn.yaml, 150 epochs) in
``float32`` and ``bf16_mixed`` for a few seeds, and prints the test accuracies and their
differences. The acceptance is |bf16_mixed - float32| <= 0.5 points on the quickstart and <= 1
point on MNIST-1D (tests/test_precision.py checks a smaller version of both in CI).

Usage::

    python benchmarks/precision_accuracy.py [--seeds 0,1,2] [--cnn-epochs 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax

import jopt
from jopt.data import Batching, load_dataset
from jopt.models import make_model, precision_policy
from jopt.schedules import cosine_decay_schedule
from jopt.train import fit, precision_optimizer


def accuracy(task: str, policy_name: str, seed: int, cnn_epochs: int) -> float:
    p = precision_policy(policy_name)
    if task == "quickstart":
        data = load_dataset("digits", seed=seed, val_fraction=0.1, test_fraction=0.25)
        model = make_model("mlp", num_outputs=10, hidden=(128,), dropout=0.2, precision=p)
        epochs, batch = 60, 32
        steps = epochs * (len(data.y_train) // batch)
        tx = jopt.adam(cosine_decay_schedule(2e-3, steps))
    else:
        data = load_dataset("mnist1d", seed=seed)
        model = make_model(
            "cnn",
            num_outputs=10,
            channels=(25, 25, 25),
            kernel_size=5,
            dense=0,
            pool=2,
            precision=p,
        )
        epochs, batch = cnn_epochs, 100
        tx = jopt.adam(1e-2)
    with jax.default_matmul_precision(p.matmul):
        r = fit(
            model,
            precision_optimizer(tx, p),
            data,
            epochs=epochs,
            key=seed,
            batching=Batching("minibatch", batch),
            eval_splits=("test",),
        )
    return 100.0 * r.history[-1]["test_accuracy"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tasks", default="quickstart,mnist1d_cnn")
    ap.add_argument("--cnn-epochs", type=int, default=150)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = {}
    print("| task | seed | float32 | bf16_mixed | diff |\n|---|---|---|---|---|")
    for task in [t for t in args.tasks.split(",") if t]:
        diffs = []
        for seed in seeds:
            a32 = accuracy(task, "float32", seed, args.cnn_epochs)
            a16 = accuracy(task, "bf16_mixed", seed, args.cnn_epochs)
            diffs.append(a16 - a32)
            out[f"{task}/{seed}"] = {"float32": a32, "bf16_mixed": a16}
            print(f"| {task} | {seed} | {a32:.2f} | {a16:.2f} | {a16 - a32:+.2f} |", flush=True)
        print(f"| {task} | mean | | | {statistics.mean(diffs):+.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
