"""``jopt compare RUN_OR_SWEEP_DIR ...``: one table (markdown + CSV) and overlaid curves.

Run directories give one row each (metrics at the best epoch). Sweep directories give one row
per grid point (mean ± std over seeds) and a learning-rate sensitivity plot when the grid
varies ``optimizer.learning_rate``.
"""

from __future__ import annotations

import argparse
import os

from jopt.core import JoptError

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run or sweep directories")
    parser.add_argument(
        "--out",
        default=None,
        help="where to write compare.md/.csv and plots (default: a new directory under runs/)",
    )
    parser.add_argument(
        "--x",
        choices=("epoch", "time"),
        default="epoch",
        help="x axis of the curves: epoch or wall time",
    )


def _rows_and_curves(path: str):
    from jopt.experiment import check_run_dir, read_json, read_jsonl

    name = os.path.basename(os.path.normpath(path))
    sweep_file = os.path.join(path, "sweep.json")
    if os.path.exists(sweep_file):
        info = read_json(sweep_file)
        rows = [{**r, "point": f"{name}: {r['point']}"} for r in info["results"]]
        curves = {
            f"{name}/{m['dir']}": read_jsonl(os.path.join(path, m["dir"], "metrics.jsonl"))
            for m in info["members"]
        }
        return rows, curves, info
    check_run_dir(path)
    summary_file = os.path.join(path, "summary.json")
    if not os.path.exists(summary_file):
        raise JoptError(f"{path} has no summary.json (did the run finish?)")
    summary = read_json(summary_file)
    # A test-problem run logs steps (and its gap to the optimum) rather than epochs.
    epochs = summary.get("epochs_run", summary.get("steps"))
    row = {"point": name, "seeds": 1, "epochs": epochs}
    metrics = ["train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
    if "problem" in summary:
        metrics.append("gap_to_optimum")
    for m in metrics:
        row[m] = summary["best"].get(m, summary["final"].get(m))
        row[f"{m}_std"] = None
    return [row], {name: read_jsonl(os.path.join(path, "metrics.jsonl"))}, None


def _is_problem_run(path: str) -> bool:
    """True when ``path`` is a run of a classical test problem (``problem: {name: rosenbrock}``)."""
    from jopt.experiment import is_problem, load_config

    cfg_file = os.path.join(path, "config.yaml")
    return os.path.exists(cfg_file) and is_problem(load_config(cfg_file))


def main(args: argparse.Namespace) -> int:
    from jopt.experiment import (
        make_run_dir,
        markdown_table,
        plot_overlay,
        plot_problem_runs,
        plot_sensitivity,
        write_tables,
    )

    rows, curves, sweeps = [], {}, []
    for path in args.dirs:
        if not os.path.isdir(path):
            raise JoptError(f"not a directory: {path}")
        r, c, info = _rows_and_curves(path)
        rows += r
        curves.update(c)
        if info is not None:
            sweeps.append((os.path.basename(os.path.normpath(path)), info))
    out = args.out or make_run_dir("runs", "compare")
    os.makedirs(out, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "point", k))
    write_tables([{k: r.get(k) for k in keys} for r in rows], out, "compare")
    for metric in ("train_loss", "val_loss", "val_accuracy"):
        plot_overlay(curves, metric, os.path.join(out, f"{metric}_vs_{args.x}.png"), args.x)
    lr_key = "optimizer.learning_rate"
    for metric in ("val_loss", "val_accuracy"):
        groups: dict[str, dict[float, list]] = {}
        for name, info in sweeps:
            for r in info["results"]:
                if lr_key in r:
                    label = name + "".join(
                        f", {k.split('.')[-1]}={r[k]}" for k in info["grid"] if k != lr_key
                    )
                    groups.setdefault(label, {}).setdefault(r[lr_key], []).append(r.get(metric))
        if groups:
            plot_sensitivity(groups, metric, os.path.join(out, f"lr_sensitivity_{metric}.png"))
    if not sweeps and all(_is_problem_run(path) for path in args.dirs):
        # Test-problem runs: also overlay the optimizers' paths on the problem's contour.
        plot_problem_runs(list(args.dirs), out)
    print(markdown_table(rows))
    print(f"table and plots in {out}")
    return 0
