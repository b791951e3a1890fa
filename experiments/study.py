"""Run a study folder and write its results table and plots.

    python experiments/study.py experiments/<study> [--runs-dir /tmp/jopt-studies]

A study folder holds ``study.yaml`` and the sweep configs it names. For each config this runs
``jopt sweep`` (grid × seeds, vmapped where possible), then writes into the folder:

- ``results.md``: one row per config (``mode: best``: the grid point with the best mean of
  ``select`` over seeds; ``mode: all``: every grid point), metrics as mean ± std over seeds
  at each run's best epoch (``final_*`` columns: at the last epoch);
- ``plots/*.png``: mean curves of the reported points, and learning-rate sensitivity when
  a config's grid varies ``optimizer.learning_rate``;
- ``results.json``: every number in the table, and the sweep directories used.

The README of each study embeds ``results.md`` (copied in by hand, with the discussion).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import yaml

from jopt.experiment import (
    atomic_write,
    load_config,
    plot_overlay,
    plot_sensitivity,
    point_label,
    read_json,
    read_jsonl,
    sweep,
)

LR = "optimizer.learning_rate"


def _stat(values) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None], float)
    if not len(v):
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _value(summary: dict, key: str):
    if key.startswith("ret_"):  # the returned model: best epoch if early stopping restored it
        row = summary["best"] if summary.get("restored_best") else summary["final"]
        if key == "ret_gap":
            if row.get("train_eval_accuracy") is None or row.get("test_accuracy") is None:
                return None
            return row["train_eval_accuracy"] - row["test_accuracy"]
        return row.get(key[4:])
    if key.startswith("final_"):
        return summary["final"].get(key[6:])
    if key == "gap":  # train (eval mode) minus test accuracy at the best epoch
        b = summary["best"]
        if b.get("train_eval_accuracy") is None or b.get("test_accuracy") is None:
            return None
        return b["train_eval_accuracy"] - b["test_accuracy"]
    if key in summary and not isinstance(summary[key], dict):
        return summary[key]
    return summary["best"].get(key, summary["final"].get(key))


def _mean_curve(directory: str, members: list[dict], metric: str, x: str):
    curves = [read_jsonl(os.path.join(directory, m["dir"], "metrics.jsonl")) for m in members]
    epochs = [r["epoch"] for r in curves[0] if r.get(metric) is not None]
    rows = []
    for e in epochs:
        vals = [next((r[metric] for r in c if r["epoch"] == e), None) for c in curves]
        xs = [next((r[x] for r in c if r["epoch"] == e), None) for c in curves]
        if all(v is not None for v in vals):
            rows.append(
                {
                    "epoch": e,
                    "time": float(np.mean(xs)) if x == "time" else None,
                    metric: float(np.mean(vals)),
                }
            )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("study", help="study folder holding study.yaml")
    ap.add_argument("--runs-dir", default=os.environ.get("JOPT_STUDY_RUNS", "/tmp/jopt-studies"))
    ap.add_argument("--only", nargs="*", help="run only these configs (by file name)")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="redraw results.md and plots from results.json without training",
    )
    a = ap.parse_args()
    with open(os.path.join(a.study, "study.yaml")) as f:
        spec = yaml.safe_load(f)
    metrics = spec.get("table", ["test_accuracy", "test_loss"])
    select = spec.get("select", "val_accuracy")
    curves = spec.get("curves", [{"metric": "val_loss", "x": "epoch"}])
    out_json = os.path.join(a.study, "results.json")
    previous = read_json(out_json) if os.path.exists(out_json) else {"configs": {}}
    results = previous["configs"]
    t_all = time.perf_counter()
    for entry in spec["configs"]:
        name = entry["file"]
        if a.report_only or (a.only and name not in a.only):
            continue
        cfg = load_config(
            os.path.join(a.study, name),
            [f"output.runs_dir={a.runs_dir}", "output.checkpoints=false", "output.progress=false"],
        )
        t0 = time.perf_counter()
        directory = sweep(cfg)
        info = read_json(os.path.join(directory, "sweep.json"))
        summaries = [
            read_json(os.path.join(directory, m["dir"], "summary.json")) for m in info["members"]
        ]
        points: dict[str, list[int]] = {}
        for i, m in enumerate(info["members"]):
            points.setdefault(json.dumps(m["point"], sort_keys=True), []).append(i)
        rows = []
        for key, idx in points.items():
            point = json.loads(key)
            row = {
                "config": cfg.name,
                "point": point_label(point),
                "params": point,
                "seeds": len(idx),
                "members": idx,
            }
            for k in {*metrics, select}:
                row[k], row[f"{k}_std"] = _stat([_value(summaries[i], k) for i in idx])
            rows.append(row)
        sign = 1 if "accuracy" in select else -1
        scored = [r for r in rows if r[select] is not None]
        best = max(scored, key=lambda r: sign * r[select]) if scored else rows[0]
        lr_curve = {}
        for r in rows:
            if LR in r["params"]:
                lr_curve[r["params"][LR]] = [_value(summaries[i], select) for i in r["members"]]
        results[name] = {
            "label": entry.get("label", cfg.name),
            "mode": entry.get("mode", "best"),
            "rows": rows,
            "best": best,
            "sweep_dir": directory,
            "groups": info["num_compiled_groups"],
            "lr_curve": lr_curve,
            "wall_time": time.perf_counter() - t0,
        }
        previous["configs"] = results
        atomic_write(out_json, json.dumps(previous, indent=1, default=str) + "\n")
        print(
            f"[{name}] {len(info['members'])} runs, {info['num_compiled_groups']} groups, "
            f"{time.perf_counter() - t0:.0f} s; best {best['point']}: "
            f"{select}={best[select]}",
            flush=True,
        )
    write_report(a.study, spec, results, metrics, select, curves)
    print(f"study done in {time.perf_counter() - t_all:.0f} s", flush=True)
    return 0


def write_report(
    study: str, spec: dict, results: dict, metrics: list[str], select: str, curves: list[dict]
) -> None:
    head = ["run", "setting", "seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    shown: dict[str, tuple[str, list[int]]] = {}
    for entry in spec["configs"]:
        res = results.get(entry["file"])
        if res is None:
            continue
        rows = res["rows"] if res["mode"] == "all" else [res["best"]]
        for r in rows:
            label = res["label"] if res["mode"] != "all" else r["point"]
            cells = [res["label"], r["point"], str(r["seeds"])]
            for m in metrics:
                v, s = r.get(m), r.get(f"{m}_std")
                cells.append("–" if v is None else f"{v:.4f} ± {s:.4f}")
            lines.append("| " + " | ".join(cells) + " |")
            shown[label] = (res["sweep_dir"], r["members"])
    atomic_write(os.path.join(study, "results.md"), "\n".join(lines) + "\n")
    plots = os.path.join(study, "plots")
    for c in curves:
        runs = {}
        for label, (directory, idx) in shown.items():
            if not os.path.isdir(directory):
                continue
            info = read_json(os.path.join(directory, "sweep.json"))
            runs[label] = _mean_curve(
                directory, [info["members"][i] for i in idx], c["metric"], c.get("x", "epoch")
            )
        if runs:
            plot_overlay(
                runs,
                c["metric"],
                os.path.join(plots, f"{c['metric']}_vs_{c.get('x', 'epoch')}.png"),
                c.get("x", "epoch"),
                title=f"{spec['title']} (mean over seeds)",
            )
    groups = {
        results[e["file"]]["label"]: {
            float(k): v for k, v in results[e["file"]]["lr_curve"].items()
        }
        for e in spec["configs"]
        if e["file"] in results and results[e["file"]]["lr_curve"]
    }
    if groups:
        plot_sensitivity(
            groups,
            select,
            os.path.join(plots, f"lr_sensitivity_{select}.png"),
            title=f"{spec['title']}: best-epoch {select} (mean ± std over seeds)",
        )


if __name__ == "__main__":
    sys.exit(main())
