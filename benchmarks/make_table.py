"""Print the markdown tables of benchmarks/README.md from benchmarks/results/*.json.

python benchmarks/make_table.py
"""

from __future__ import annotations

import glob
import json
import os

HERE = os.path.dirname(__file__)


def _load(name):
    path = os.path.join(HERE, "results", name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def update_table(rep) -> str:
    env = rep["environment"]
    bw = rep["bandwidth"]
    lines = [
        f"{rep['config']['params']:,} params, bound {bw['gbs']:.1f} GB/s (triad "
        f"{bw['triad_gbs']:.1f}, scaled copy {bw['copy_gbs']:.1f}); {env['device_kind']}, "
        f"load avg {', '.join(f'{x:.1f}' for x in env['load_avg'] or [])} on "
        f"{env['cpu_count']} cores",
        "",
        "| optimizer | impl | leaves | compile s | step min / median / p90 ms | MB/step "
        "| x bound (min) | x bound (median) | step / optax | compile / optax |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = {(q["optimizer"], q["impl"], q["leaves"]): q for q in rep["ratios"]}
    for r in rep["results"]:
        s = r["step_s"]
        q = ratios.get((r["optimizer"], r["impl"], r["leaves"]))
        xm = r.get("x_bound_median", s["median"] / r["bound_s"])
        xb = s["min"] / r["bound_s"]
        step_q = "-" if q is None else f"{q['step_ratio']:.2f}"
        comp_q = "-" if q is None else f"{q['compile_ratio']:.2f}"
        lines.append(
            f"| {r['optimizer']} | {r['impl']} | {r['leaves']} | {r['compile_s']:.2f} | "
            f"{s['min'] * 1e3:.3f} / {s['median'] * 1e3:.3f} / {s['p90'] * 1e3:.3f} | "
            f"{r['bytes_per_step'] / 1e6:.2f} | {xb:.2f} | {xm:.2f} | "
            f"{step_q} | {comp_q} |"
        )
    return "\n".join(lines)


def mlp_table(rep) -> str:
    env = rep["environment"]
    lines = []
    for blocks, med in rep["results"].items():
        g = med["grad"]
        what = (
            f"{blocks.split('-')[0]}-leaf model, leaves of shape (4,)"
            if blocks.endswith("-leaves")
            else f"{blocks} blocks, width {rep['width']}, batch {rep['batch']}"
        )
        lines += [
            f"{what}; "
            f"{env['device_kind']}, load avg "
            f"{', '.join(f'{x:.1f}' for x in env['load_avg'] or [])} on {env['cpu_count']} cores",
            "",
            "| variant | compile s | compile / grad | step ms (median) | step / grad |",
            "|---|---|---|---|---|",
        ]
        for k, v in med.items():
            lines.append(
                f"| {k} | {v['compile_s']:.2f} | {v['compile_s'] / g['compile_s']:.2f} | "
                f"{v['step_ms']:.3f} | {v['step_ms'] / g['step_ms']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def train_table(rep) -> str:
    env, sh = rep["environment"], rep["shapes"]
    lines = [
        f"`jopt bench train --config {rep['config']['path']}` ({rep['config']['optimizer']}, "
        f"{sh['params']:,} params in {sh['leaves']} leaves, batch {sh['batch']}, "
        f"{sh['steps_per_epoch']} steps per epoch); {env['device_kind']}, load avg "
        f"{', '.join(f'{x:.1f}' for x in env['load_avg'] or [])} on {env['cpu_count']} cores",
        "",
        "| impl | step compile s | step ms (median) | epoch compile s | epoch ms (median) "
        "| step / grad | step compile / grad | epoch / grad |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = {q["impl"]: q for q in rep["ratios"]}
    for r in rep["results"]:
        q = ratios.get(r["impl"])
        tail = (
            "1 | 1 | 1"
            if q is None
            else f"{q['step_ratio']:.2f} | {q['step_compile_ratio']:.2f} | {q['epoch_ratio']:.2f}"
        )
        lines.append(
            f"| {r['impl']} | {r['step_compile_s']:.2f} | {r['step_s']['median'] * 1e3:.3f} | "
            f"{r['epoch_compile_s']:.2f} | {r['epoch_s']['median'] * 1e3:.2f} | {tail} |"
        )
    return "\n".join(lines)


def main():
    for path in sorted(glob.glob(os.path.join(HERE, "results", "*.json"))):
        rep = _load(os.path.basename(path))
        print(f"\n#### {os.path.basename(path)}\n")
        kind = rep.get("kind")
        table = {"update": update_table, "train": train_table}.get(kind, mlp_table)
        print(table(rep))


if __name__ == "__main__":
    main()
