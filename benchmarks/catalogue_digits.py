"""Train the digits quickstart with every catalogue optimizer over a short learning-rate grid.

Prints the Markdown table for docs/optimizers.md ("Trains the quickstart to >= 0.95"):
best test accuracy per optimizer and the learning rate that gave it. Run on an idle machine:

    python benchmarks/catalogue_digits.py [--epochs 20] [--only adam,sgd]

It uses the public ``jopt.train.fit`` API (see its docstring for the signature).
"""

from __future__ import annotations

import argparse
import inspect

import jopt
import jopt.data
import jopt.models
import jopt.train
from jopt.optimizers import catalogue

GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# Optimizers without a learning rate (parameter-free) run with their defaults.
NO_LR = {"prodigy", "dadapt_adamw"}
# Optimizers whose update needs more than the gradient: jopt.train.fit's step passes none.
NEEDS_EXTRA = {
    "lbfgs": "needs value=, grad=, value_fn= (full-batch line search)",
    "sophia": "needs obj_fn= (Hutchinson Hessian estimate)",
    "polyak_sgd": "needs value=",
}


def _factory(name):
    if name == "schedule_free":  # a wrapper (schedule_free_sgd/_adamw are the optimizers)
        return None
    fn = getattr(jopt, name, None)
    if fn is None or "learning_rate" not in inspect.signature(fn).parameters:
        return None
    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    names = [n for n in catalogue._public(jopt.optimizers) if _factory(n)]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    # The quickstart's data and model (configs/quickstart.yaml), without its schedule/dropout.
    data = jopt.data.load_dataset("digits", val_fraction=0.1, test_fraction=0.25)
    model = jopt.models.MLP(10, hidden=(128,))
    print("| optimizer | best lr | test accuracy | >= 0.95 |\n|---|---|---|---|")
    for name in names:
        if name in NEEDS_EXTRA:
            print(f"| `{name}` | - | not run | {NEEDS_EXTRA[name]} |")
            continue
        best = (0.0, None)
        for lr in (None,) if name in NO_LR else GRID:
            tx = _factory(name)() if lr is None else _factory(name)(lr)
            try:
                result = jopt.train.fit(model, tx, data, epochs=args.epochs, key=0)
            except jopt.JoptError as e:
                print(f"| `{name}` | {lr} | refused | {e} |")
                break
            acc = float(result.history[-1]["test_accuracy"])
            best = max(best, (acc, lr), key=lambda x: x[0])
        ok = "yes" if best[0] >= 0.95 else "no"
        print(f"| `{name}` | {best[1]} | {best[0]:.3f} | {ok} |")


if __name__ == "__main__":
    main()
