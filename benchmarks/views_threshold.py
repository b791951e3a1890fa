"""Where static splits start to beat dynamic slices as a packed model's views.

    python benchmarks/views_threshold.py --leaves 64,128,256,512 --repeats 2

``jopt run`` on ``configs/leaves_model.py``'s ``ManyLeaves(leaves=N, size=4)`` (no matrix, so
only the leaf count decides ``PackLayout.dynamic_views``), 300 epochs of digits, with the
views forced dynamic or static by patching ``jopt.fused._layout.STATIC_VIEWS_MIN_LEAVES``. Each
run is its own process, dynamic and static alternate, and the table shows compile seconds and
steps/s from each run's summary.json (median over repeats). No assertions: a benchmark.
Each run prints as it ends; four sizes at three repeats take more than 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

_CHILD = """
import json, os, sys
import jopt.fused._layout as layout
from jopt.experiment import config_from_dict
from jopt.experiment._runner import run

mode, leaves, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
layout.STATIC_VIEWS_MIN_LEAVES = 10**9 if mode == "dynamic" else 0
raw = {
    "name": f"leaves{leaves}", "seed": 0, "data": {"name": "digits"},
    "model": {"name": "leaves_model:ManyLeaves", "options": {"leaves": leaves, "size": 4}},
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
    "batching": {"strategy": "minibatch", "batch_size": 32},
    "train": {"epochs": 300},
    "output": {"progress": False, "plots": False, "checkpoints": False, "runs_dir": runs},
}
with open(os.path.join(run(config_from_dict(raw)), "summary.json")) as f:
    s = json.load(f)
print(json.dumps({"compile_s": s["compile_time"], "steps_per_s": s["steps_per_s"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leaves", default="64,128,256,512")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(HERE, "configs"), *sys.path])}
    rows: dict = {}
    with tempfile.TemporaryDirectory() as runs:
        for n in [int(v) for v in args.leaves.split(",")]:
            for _ in range(args.repeats):
                for mode in ("dynamic", "static"):
                    out = (
                        subprocess.run(
                            [sys.executable, "-c", _CHILD, mode, str(n), runs],
                            env=env,
                            cwd=os.path.join(HERE, "configs"),
                            capture_output=True,
                            text=True,
                            check=True,
                        )
                        .stdout.strip()
                        .splitlines()[-1]
                    )
                    rows.setdefault((n, mode), []).append(json.loads(out))
                    print(n, mode, out, flush=True)
    print(f"{'leaves':>6} {'views':>8} {'compile s':>10} {'steps/s':>9}")
    table = []
    for (n, mode), runs_ in rows.items():
        c = statistics.median(r["compile_s"] for r in runs_)
        s = statistics.median(r["steps_per_s"] for r in runs_)
        table.append({"leaves": n, "views": mode, "compile_s": c, "steps_per_s": s, "runs": runs_})
        print(f"{n:>6} {mode:>8} {c:>10.2f} {s:>9.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
