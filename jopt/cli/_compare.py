"""``jopt compare RUN_OR_SWEEP_DIR ...``: one table (markdown + CSV) and overlaid curves.

Run directories give one row each (metrics at the best epoch). Sweep directories give one row
per grid point (mean ± std over seeds) and a learning-rate sensitivity plot when the grid
varies ``optimizer.learning_rate``. ``--html`` also writes ``compare.html``: one
self-contained file with the table and every plot embedded (base64 PNG).

Every input is read and checked before anything is written: a corrupt or truncated
``summary.json``, ``sweep.json`` or ``metrics.jsonl`` stops the command with one line naming
the file (no partial table; see docs/decisions.md), as does an ``--out`` that cannot be written.
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
    parser.add_argument(
        "--html",
        action="store_true",
        help="also write compare.html: one self-contained file, tables and plots embedded",
    )


_CORRUPT = (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError, IndexError)


def _read(reader, file: str):
    """``reader(file)``; a corrupt or truncated file is a one-line JoptError naming it."""
    try:
        return reader(file)
    except _CORRUPT as e:
        raise JoptError(f"cannot compare: {file} is corrupt ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise JoptError(f"cannot compare: cannot read {file}: {e.strerror or e}") from None


def _curves(file: str) -> list[dict]:
    from jopt.experiment import read_jsonl

    rows = _read(read_jsonl, file)
    if not all(isinstance(r, dict) for r in rows):
        raise JoptError(f"cannot compare: {file} is corrupt (a line is not a JSON object)")
    return rows


def _sweep_rows(path: str, name: str, sweep_file: str):
    from jopt.experiment import read_json

    info = _read(read_json, sweep_file)
    try:
        rows = [{**r, "point": f"{name}: {r['point']}"} for r in info["results"]]
        dirs = [str(m["dir"]) for m in info["members"]]
        info["grid"] = dict(info.get("grid") or {})
    except _CORRUPT as e:
        raise JoptError(f"cannot compare: {sweep_file} is corrupt (missing or bad {e})") from None
    curves = {f"{name}/{d}": _curves(os.path.join(path, d, "metrics.jsonl")) for d in dirs}
    return rows, curves, info


def _rows_and_curves(path: str):
    from jopt.experiment import check_run_dir, read_json

    name = os.path.basename(os.path.normpath(path))
    sweep_file = os.path.join(path, "sweep.json")
    if os.path.exists(sweep_file):
        return _sweep_rows(path, name, sweep_file)
    check_run_dir(path)
    summary_file = os.path.join(path, "summary.json")
    if not os.path.exists(summary_file):
        raise JoptError(f"{path} has no summary.json (did the run finish?)")
    summary = _read(read_json, summary_file)
    best = summary.get("best") or {} if isinstance(summary, dict) else None
    final = summary.get("final") or {} if isinstance(summary, dict) else None
    if not isinstance(best, dict) or not isinstance(final, dict):
        raise JoptError(f"cannot compare: {summary_file} is corrupt (not a run summary)")
    # A test-problem run logs steps (and its gap to the optimum) rather than epochs.
    epochs = summary.get("epochs_run", summary.get("steps"))
    row = {"point": name, "seeds": 1, "epochs": epochs, "status": summary.get("status")}
    metrics = ["train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
    if "problem" in summary:
        metrics.append("gap_to_optimum")
    for m in metrics:
        row[m] = best.get(m, final.get(m))
        row[f"{m}_std"] = None
    return [row], {name: _curves(os.path.join(path, "metrics.jsonl"))}, None


def _is_problem_run(path: str) -> bool:
    """True when ``path`` is a run of a classical test problem (``problem: {name: rosenbrock}``)."""
    from jopt.experiment import is_problem, load_config

    cfg_file = os.path.join(path, "config.yaml")
    return os.path.exists(cfg_file) and is_problem(load_config(cfg_file, validate=False))


def _html(out: str, rows: list[dict], dirs: list[str]) -> None:
    from jopt.experiment import markdown_table, write_html_report

    pngs = sorted(
        os.path.relpath(os.path.join(d, f), out)
        for d, _, files in os.walk(out)
        for f in files
        if f.endswith(".png")
    )
    report = write_html_report(
        os.path.join(out, "compare.html"),
        title="jopt compare: " + ", ".join(os.path.basename(os.path.normpath(d)) for d in dirs),
        tables=[
            (
                "Metrics at each run's best epoch (sweeps: mean ± std over seeds)",
                markdown_table(rows),
            )
        ],
        images=[os.path.join(out, p) for p in pngs],
        notes=["Inputs: " + " ".join(dirs)],
    )
    print(f"report in {report}")


def main(args: argparse.Namespace) -> int:
    from jopt.experiment import (
        check_output_dir,
        make_run_dir,
        markdown_table,
        plot_overlay,
        plot_problem_runs,
        plot_sensitivity,
        write_tables,
    )

    check_output_dir("--out", args.out or "runs")
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
    if args.html:
        _html(out, rows, args.dirs)
    print(f"table and plots in {out}")
    return 0
