"""The training engine's reference recipes (``jopt reproduce``).

    jopt reproduce digits     # MLP 64-128-10 + Adam on digits, >= 0.97 test acc.
    jopt reproduce mnist1d    # 1-D CNN + Adam on mnist1d, >= 0.90 test acc.
    jopt reproduce all --seeds 0 1 2

Each recipe is a fixed set of hyperparameters (below); every seed changes the split (digits),
the initialization, shuffling and dropout. The test split is never used for any choice:
early stopping (mnist1d) watches the validation split and restores its best epoch; digits
reports its final epoch.
"""

from __future__ import annotations

from jopt.data import Augment, Batching, load_dataset
from jopt.models import make_model
from jopt.optimizers import adam
from jopt.schedules import cosine_decay
from jopt.train._fit import EarlyStopping, fit

__all__ = ["RECIPES", "run_recipe"]

RECIPES = {
    # standardized digits, stratified 25 % test split, 10 % validation; Adam with a cosine
    # decay of the learning rate to 0 over the run; the final epoch is reported.
    "digits": dict(
        data=dict(name="digits", val_fraction=0.1, test_fraction=0.25, preprocess="standardize"),
        model=dict(name="mlp", hidden=[128], activation="relu", dropout=0.2),
        learning_rate=2e-3,
        cosine=True,
        batching=Batching("minibatch", 32),
        epochs=60,
        augment=None,
        early_stopping=None,
    ),
    # mnist1d: the package's 4000/1000 split; 10 % of train for validation
    "mnist1d": dict(
        data=dict(name="mnist1d", val_fraction=0.1, preprocess="standardize"),
        model=dict(name="cnn", channels=[16, 16, 16], kernel_size=5, dense=128),
        learning_rate=2e-3,
        cosine=False,
        batching=Batching("minibatch", 64),
        epochs=60,
        augment=Augment(max_shift=2),
        early_stopping=EarlyStopping("val_accuracy", patience=15),
    ),
}


def run_recipe(name: str, seed: int, progress: bool = False) -> dict:
    """Train recipe ``name`` (a key of :data:`RECIPES`) with ``seed``; return its scores."""
    r = RECIPES[name]
    d = dict(r["data"])
    ds = load_dataset(d.pop("name"), seed=seed, **d)
    m = dict(r["model"])
    model = make_model(m.pop("name"), num_outputs=ds.num_outputs, **m)
    lr = r["learning_rate"]
    if r["cosine"]:
        total = r["batching"].steps_per_epoch(len(ds.y_train)) * r["epochs"]
        lr = cosine_decay(lr, total)
    res = fit(
        model,
        adam(lr),
        ds,
        epochs=r["epochs"],
        key=seed,
        batching=r["batching"],
        augment=r["augment"],
        early_stopping=r["early_stopping"],
        eval_splits=("val", "test"),
        progress=progress,
    )
    best_epoch = res.best_epoch or len(res.history)
    best = res.history[best_epoch - 1]
    return {
        "recipe": name,
        "seed": seed,
        "best_epoch": best_epoch,
        "epochs_run": len(res.history),
        "val_accuracy": best["val_accuracy"],
        "test_accuracy": best["test_accuracy"],
        "steps_per_s": res.timings["steps_per_s"],
        "compile_s": res.timings["compile_s"],
    }
