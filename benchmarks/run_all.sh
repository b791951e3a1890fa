#!/usr/bin/env bash
# Reproduce every figure of benchmarks/README.md in one go, then print the markdown tables.
# Results go to benchmarks/results/*.json. About 15 minutes on an idle 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
# P2/P3: the 50-block flax MLP, gradient alone vs gradient + Adam in every variant.
python benchmarks/fused_alternatives.py --blocks 50 --steps 30 --repeats 3 \
  --variants grad,optax,jopt,fused,fused_static,fused_optax,packed,packed_static,packed_grad \
  --json "$out/mlp_50.json"
# P4: a 2000-leaf model (leaves of shape (4,)), gradient alone vs gradient + Adam.
python benchmarks/fused_alternatives.py --leaves 2000 --steps 20 \
  --variants grad,optax,fused,fused_static,packed,packed_static,packed_grad \
  --json "$out/leaves_2000.json"
# P1: one leaf of 10M, then 1M in 1000 leaves; adam, adamw, sgd (momentum).
python -m jopt.cli bench update --optimizer adam,adamw,sgd --params 10M --leaves 1 \
  --steps 20 --json "$out/update_10M_1.json"
python -m jopt.cli bench update --optimizer adam,adamw,sgd --params 1M --leaves 1000 \
  --impl optax,fused,packed --steps 20 --json "$out/update_1M_1000.json"
# P4, the update alone: 2000 leaves of shape (4,).
python -m jopt.cli bench update --optimizer adam --params 8000 --leaves 2000 \
  --steps 20 --json "$out/update_2000_leaves.json"
# P2/P3 at 200 blocks (the slowest: optax alone compiles for ~25 s on an idle machine).
python benchmarks/fused_alternatives.py --blocks 200 --steps 20 \
  --variants grad,optax,fused,packed,packed_grad --json "$out/mlp_200.json"
# Issue 13's goals side by side in one process: 50-block MLP and 2000 leaves (grad, optax,
# packed_train_step), and the 1M/1000-leaf Adam update against both bounds.
python benchmarks/packed_goals.py --steps 30 --repeats 3 --json "$out/packed_goals.json"
# A whole train step and epoch from a config (the 6-leaf mnist1d MLP).
python -m jopt.cli bench train --config configs/mnist1d_mlp.yaml --steps 20 \
  --json "$out/train_mnist1d_mlp.json"
python benchmarks/make_table.py
