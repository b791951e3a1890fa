"""End-to-end smoke test of the training engine on digits."""

import jax
import numpy as np

import jopt
from jopt.data import Batching, load_dataset
from jopt.models import make_model
from jopt.train import fit


def test_fit_digits_mlp_learns():
    ds = load_dataset("digits", seed=0, val_fraction=0.1, test_fraction=0.25)
    model = make_model("mlp", num_outputs=ds.num_classes, hidden=[32])
    r = fit(
        model,
        jopt.adam(3e-3),
        ds,
        epochs=3,
        key=jax.random.key(0),
        batching=Batching("minibatch", 64),
        eval_splits=("test",),
    )
    assert r.steps_per_epoch == len(ds.y_train) // 64
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    assert r.history[-1]["step"] == 3 * r.steps_per_epoch
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    # 3 epochs of a 32-unit MLP is far above the 10 % of chance on digits
    assert r.history[-1]["test_accuracy"] > 0.85
    assert np.isfinite(r.timings["compile_s"]) and r.timings["steps_per_s"] > 0
