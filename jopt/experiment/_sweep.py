"""Sweeps: a grid crossed with seeds, run as few compiled programs as possible.

Members that differ only in *vmappable* values (the seed, and hyperparameters the optimizer
keeps in its state: ``optimizer.learning_rate``, float ``optimizer.*`` arguments and
``regularization.weight_decay``, as ``jopt.experiment.structure_key`` says) form one group:
their train states are stacked and the pure epoch function is vmapped over them, so the group
compiles once and runs as one program.
Anything else (optimizer family, model width, batch size, schedule...) is structural and
starts a new group; each group is compiled once.

``protocol`` follows DeepOBS / AlgoPerf at small scale: run the grid with one seed, pick the
best point by a validation metric, re-run it with N seeds and report mean ± std.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import time
from typing import Any

import numpy as np

from jopt.core.errors import JoptError
from jopt.experiment import _artifacts as art
from jopt.experiment import _registry as reg
from jopt.experiment._build import load_data, setup, structure_key
from jopt.experiment._load import dump_config, replace_dotted
from jopt.experiment._member import Member
from jopt.experiment._plots import plot_overlay, plot_sensitivity
from jopt.experiment._runner import _problem_guard
from jopt.experiment._schema import Config, to_dict
from jopt.experiment._stream import has_split, is_sharded
from jopt.experiment._summary import finish
from jopt.experiment._tracker import open_tracker
from jopt.experiment._trainer import GroupTrainer
from jopt.experiment._validate import validate_config


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt_value(x) for x in v)
    return str(v)


def point_label(point: dict[str, Any]) -> str:
    """``learning_rate=0.001,batch_size=32`` (last key segment, short numbers)."""
    return ",".join(f"{k.split('.')[-1]}={_fmt_value(v)}" for k, v in point.items()) or "base"


def expand(
    config: Config, seeds: int | None = None, grid: dict[str, list] | None = None
) -> list[tuple[dict, Config]]:
    """Every ``(grid point, member config)`` of the sweep, grid-major then seed."""
    grid = config.sweep.grid if grid is None else grid
    seeds = config.sweep.seeds if seeds is None else seeds
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        for s in range(seeds):
            member = replace_dotted(config, {**point, "seed": config.seed + s})
            member.name = f"{config.name}-{point_label(point)}-seed{member.seed}"
            member.sweep.grid = {}
            out.append((point, member))
    return out


def group_members(configs: list[Config]) -> list[list[int]]:
    """Indices of ``configs`` grouped by :func:`structure_key`, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(structure_key(c), []).append(i)
    return list(groups.values())


def _data_key(config: Config) -> str:
    return json.dumps(to_dict(config.data), sort_keys=True)


def check_members(configs: list[Config], metric: str | None = None) -> dict[str, Any]:
    """Check every member before any is trained or anything is written: its config, that it
    can run in a sweep, its data (loaded once per distinct ``data`` section: the data-file
    checks) and what needs data and model (task, group patterns: :func:`check_setup`, once
    per compiled group). ``metric``: the protocol's selection metric, which every member must
    report. Returns the loaded data sets by ``data`` section."""
    for c in configs:
        validate_config(c)
        _problem_guard(c)
        if c.distributed.data != 1 or c.distributed.coordinator_address:
            raise JoptError(
                "sweeps run on one device (vmapped); remove the distributed section "
                "or run the members one by one with jopt run"
            )
    data_cache: dict[str, Any] = {}
    for idx in group_members(configs):
        first = configs[idx[0]]
        dkey = _data_key(first)
        if dkey not in data_cache:
            data_cache[dkey] = load_data(first)
        data = data_cache[dkey]
        setup(first, data)  # runs check_setup: loss/metrics vs task, group patterns
        if metric is None:
            continue
        if metric in reg.ACCURACY_METRICS and data.task != "classification":
            raise JoptError(
                f"sweep.protocol.metric {metric!r} is not computed for the {data.task} task "
                f"of data {first.data.name!r} (use val_loss)"
            )
        if metric.startswith("val_") and not has_split(first, "val"):
            raise JoptError(
                f"sweep.protocol.metric {metric!r} needs a validation split, but "
                f"data.val_fraction is 0 (in member {first.name})"
            )
    return data_cache


def run_members(
    configs: list[Config],
    parent: str | None,
    labels: list[str],
    *,
    progress: bool = False,
    vmap: bool = True,
    data_cache: dict[str, Any] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Train ``configs`` group by group; write each member's run directory under ``parent``.

    Returns the members' summaries and one record per group (size, compile and train time).
    ``vmap=False`` runs every member on its own (the baseline the benchmark compares with).
    ``data_cache`` is :func:`check_members`' result when the caller checked already.
    """
    if data_cache is None:
        data_cache = check_members(configs)
    # sharded data streams one run at a time (_stream): its members run on their own
    vmap = vmap and not any(is_sharded(c) for c in configs)
    groups = group_members(configs) if vmap else [[i] for i in range(len(configs))]
    summaries: list[dict | None] = [None] * len(configs)
    group_records = []
    for g, idx in enumerate(groups):
        t0 = time.perf_counter()
        first = configs[idx[0]]
        st = setup(first, data_cache[_data_key(first)])
        members = [Member(configs[i]) for i in idx]
        trainer = GroupTrainer(
            members, st, progress=progress, desc=f"group {g + 1}/{len(groups)} ({len(idx)} runs)"
        )
        if parent is not None:
            for i, mb in zip(idx, members, strict=True):
                mb.run_dir = os.path.join(parent, f"{i:03d}-{labels[i]}")
                os.makedirs(mb.run_dir, exist_ok=False)
                art.atomic_write(os.path.join(mb.run_dir, "config.yaml"), dump_config(mb.config))
                mb.tracker = open_tracker(mb.config, mb.run_dir)
        trainer.run()
        trainer.save_final()
        wall = time.perf_counter() - t0
        for i, mb in zip(idx, members, strict=True):
            # per-member plots only for single runs; a sweep draws overlays instead
            summaries[i] = finish(mb, trainer, wall, "completed", plots=len(configs) == 1)
        group_records.append(
            {
                "members": idx,
                "size": len(idx),
                "vmapped": len(idx) > 1,
                "compile_time": trainer.compile_s,
                "train_time": trainer.train_s,
                "wall_time": wall,
            }
        )
    return summaries, group_records  # type: ignore[return-value]


def _metric(summary: dict, metric: str) -> float | None:
    """``metric`` at the member's best epoch (falls back to the final value)."""
    v = summary.get("best", {}).get(metric)
    return v if v is not None else summary.get("final", {}).get(metric)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = np.asarray([v for v in values if v is not None], float)
    if not len(vals):
        return None, None, 0
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, len(vals)


REPORT_METRICS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


def aggregate(points: list[dict], summaries: list[dict]) -> list[dict]:
    """One row per grid point: mean ± std over seeds of the metrics at each run's best epoch."""
    by_point: dict[str, tuple[dict, list[dict]]] = {}
    for point, summary in zip(points, summaries, strict=True):
        by_point.setdefault(json.dumps(point, sort_keys=True, default=str), (point, []))[1].append(
            summary
        )
    rows = []
    for point, group in by_point.values():
        row: dict[str, Any] = {"point": point_label(point), **point, "seeds": len(group)}
        for m in REPORT_METRICS:
            mean, std, _ = _mean_std([_metric(s, m) for s in group])
            row[m], row[f"{m}_std"] = mean, std
        row["epochs"] = float(np.mean([s["epochs_run"] for s in group]))
        bad = sum(s.get("status") == "diverged" for s in group)
        row["status"] = "completed" if not bad else f"{bad}/{len(group)} diverged"
        rows.append(row)
    return rows


def write_tables(rows: list[dict], directory: str, stem: str = "results") -> str:
    """``<stem>.csv`` and ``<stem>.md`` (mean ± std); return the markdown."""
    keys = list(rows[0]) if rows else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in keys})
    art.atomic_write(os.path.join(directory, f"{stem}.csv"), buf.getvalue())
    md = markdown_table(rows)
    art.atomic_write(os.path.join(directory, f"{stem}.md"), md + "\n")
    return md


def markdown_table(rows: list[dict]) -> str:
    metrics = [m for m in REPORT_METRICS if any(r.get(m) is not None for r in rows)]
    status = any("status" in r for r in rows)  # a diverged run is shown as diverged
    head = ["run", "seeds", *(["status"] if status else []), *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["point"]), str(r["seeds"])]
        if status:
            cells.append(str(r.get("status", "–")))
        for m in metrics:
            v, s = r.get(m), r.get(f"{m}_std")
            multi = r["seeds"] > 1 and s is not None
            cells.append("–" if v is None else f"{v:.4f} ± {s:.4f}" if multi else f"{v:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sweep_plots(
    directory: str,
    config: Config,
    points: list[dict],
    summaries: list[dict],
    member_dirs: list[str],
) -> None:
    if not config.output.plots:
        return
    runs = {
        os.path.basename(d): art.read_jsonl(os.path.join(d, "metrics.jsonl")) for d in member_dirs
    }
    for metric in ("val_loss", "train_loss", "val_accuracy"):
        plot_overlay(
            runs, metric, os.path.join(directory, "plots", f"{metric}.png"), title=config.name
        )
    lr_key = "optimizer.learning_rate"
    if any(lr_key in p for p in points):
        for metric in ("val_loss", "val_accuracy"):
            groups: dict[str, dict[float, list]] = {}
            for p, s in zip(points, summaries, strict=True):
                rest = point_label({k: v for k, v in p.items() if k != lr_key})
                groups.setdefault(rest, {}).setdefault(p[lr_key], []).append(_metric(s, metric))
            plot_sensitivity(
                groups,
                metric,
                os.path.join(directory, "plots", f"lr_sensitivity_{metric}.png"),
                title=f"{config.name}: best-epoch {metric} vs learning rate",
            )


def sweep(
    config: Config,
    *,
    progress: bool = False,
    vmap: bool = True,
    seeds: int | None = None,
    grid: dict | None = None,
    parent: str | None = None,
    tag: str = "sweep",
    metric: str | None = None,
) -> str:
    """Run the sweep in ``config.sweep`` and return the sweep directory. Every member is
    checked (config, data, task, group patterns; ``metric``: a metric each must report)
    before the first is trained or the directory is created."""
    validate_config(config)
    expanded = expand(config, seeds, grid)
    if not expanded:
        raise JoptError("the sweep is empty")
    points = [p for p, _ in expanded]
    configs = [c for _, c in expanded]
    labels = [f"{point_label(p)}-seed{c.seed}" for p, c in expanded]
    # every member (and its data) checked before anything is trained or written
    data_cache = check_members(configs, metric)
    t0 = time.perf_counter()
    directory = parent or art.make_run_dir(config.output.runs_dir, f"{config.name}-{tag}")
    art.atomic_write(os.path.join(directory, "config.yaml"), dump_config(config))
    summaries, groups = run_members(
        configs, directory, labels, progress=progress, vmap=vmap, data_cache=data_cache
    )
    dirs = [os.path.join(directory, f"{i:03d}-{labels[i]}") for i in range(len(configs))]
    rows = aggregate(points, summaries)
    write_tables(rows, directory)
    _sweep_plots(directory, config, points, summaries, dirs)
    art.write_json(
        os.path.join(directory, "sweep.json"),
        {
            "name": config.name,
            "kind": tag,
            "grid": grid if grid is not None else config.sweep.grid,
            "seeds": seeds if seeds is not None else config.sweep.seeds,
            "members": [
                {"dir": os.path.basename(d), "point": p, "seed": c.seed}
                for d, p, c in zip(dirs, points, configs, strict=True)
            ],
            "groups": groups,
            "num_compiled_groups": len(groups),
            "wall_time": time.perf_counter() - t0,
            "results": rows,
        },
    )
    return directory


def protocol(config: Config, *, progress: bool = False) -> tuple[str, dict]:
    """Grid with one seed -> best by ``sweep.protocol.metric`` -> re-run with N seeds."""
    p = config.sweep.protocol
    if not config.sweep.grid:
        raise JoptError("sweep --protocol needs sweep.grid (e.g. optimizer.learning_rate)")
    validate_config(config)
    # Both stages are checked before the first runs: the tuning members with their data and
    # the selection metric, and every point re-run with the final stage's seeds.
    check_members([c for _, c in expand(config, 1)], p.metric)
    expand(config, p.seeds)
    directory = art.make_run_dir(config.output.runs_dir, f"{config.name}-protocol")
    tune = sweep(
        config,
        progress=progress,
        seeds=1,
        tag="tune",
        parent=_child(directory, "1-tune"),
        metric=p.metric,
    )
    rows = art.read_json(os.path.join(tune, "sweep.json"))["results"]
    from jopt.train import metric_mode

    better = max if metric_mode(p.metric) == "max" else min
    scored = [r for r in rows if r.get(p.metric) is not None]
    if not scored:
        raise JoptError(f"protocol: no grid point produced {p.metric!r} (is val_fraction 0?)")
    best = better(scored, key=lambda r: r[p.metric])
    best_point = {k: best[k] for k in config.sweep.grid}
    final_cfg = replace_dotted(config, best_point)
    final = sweep(
        final_cfg,
        progress=progress,
        seeds=p.seeds,
        grid={},
        tag="final",
        parent=_child(directory, "2-final"),
    )
    final_rows = art.read_json(os.path.join(final, "sweep.json"))["results"]
    result = {
        "metric": p.metric,
        "best_point": best_point,
        "seeds": p.seeds,
        "tuning": rows,
        "final": final_rows[0],
    }
    art.write_json(os.path.join(directory, "protocol.json"), result)
    md = [
        f"# {config.name}: tuning protocol",
        "",
        f"Grid tuned with seed {config.seed}, best by {p.metric}: {point_label(best_point)}.",
        "",
        "## Tuning grid (1 seed)",
        "",
        markdown_table(rows),
        "",
        f"## Best setting re-run with {p.seeds} seeds (mean ± std)",
        "",
        markdown_table(final_rows),
        "",
    ]
    art.atomic_write(os.path.join(directory, "protocol.md"), "\n".join(md))
    return directory, result


def _child(parent: str, name: str) -> str:
    path = os.path.join(parent, name)
    os.makedirs(path, exist_ok=False)
    return path
