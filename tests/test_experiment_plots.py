"""Run plots: the sharpness diagnostic is drawn beside its stability bound 2/lr."""

from __future__ import annotations

import os

from jopt.experiment._plots import plot_run


def test_sharpness_plot_only_when_logged(tmp_path):
    rows = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "learning_rate": 0.5,
            "sharpness": 3.0 + 0.1 * e,
            "stability_bound": 4.0,
        }
        for e in range(1, 6)
    ]
    written = plot_run(rows, str(tmp_path / "with"), "t")
    names = {os.path.basename(p) for p in written}
    assert {"loss.png", "learning_rate.png", "sharpness.png"} <= names
    assert (tmp_path / "with" / "sharpness.png").stat().st_size > 5_000
    plain = [
        {k: v for k, v in r.items() if k not in ("sharpness", "stability_bound")} for r in rows
    ]
    names = {os.path.basename(p) for p in plot_run(plain, str(tmp_path / "without"), "t")}
    assert "sharpness.png" not in names and "loss.png" in names
