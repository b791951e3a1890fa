#!/usr/bin/env bash
# Reproduce every figure of benchmarks/README.md in one go (a few minutes on an idle machine).
# Results go to benchmarks/results/*.json; the terminal tables are printed as they come.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
# P1: one leaf of 10M, then 1M in 1000 leaves; adam, adamw, sgd (momentum).
python -m jopt.cli bench update --optimizer adam,adamw,sgd --params 10M --leaves 1 \
  --steps 20 --json "$out/update_10M_1.json"
python -m jopt.cli bench update --optimizer adam,adamw,sgd --params 1M --leaves 1000 \
  --steps 20 --json "$out/update_1M_1000.json"
# P4: 2000 leaves of shape (4,), the update alone.
python -m jopt.cli bench update --optimizer adam --params 8000 --leaves 2000 \
  --steps 20 --json "$out/update_2000_leaves.json"
# P2/P3: the 50- and 200-block flax MLPs, gradient alone vs gradient + Adam.
python benchmarks/fused_alternatives.py --blocks 50 --steps 30 --json "$out/mlp_50.json"
python benchmarks/fused_alternatives.py --blocks 200 --steps 20 \
  --variants grad,optax,fused,packed --json "$out/mlp_200.json"
# P4: a 2000-leaf model (leaves of shape (4,)), gradient alone vs gradient + Adam.
python benchmarks/fused_alternatives.py --leaves 2000 --steps 20 \
  --variants grad,optax,fused,packed,packed_grad --json "$out/leaves_2000.json"
