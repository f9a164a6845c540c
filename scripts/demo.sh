#!/usr/bin/env bash
# `make demo`: the embedded simulation, the policy and the follower as separate processes
# (dp_launch sim.launch.py: sim_node, policy_node, follower_node over DDS, simulated time), running
# DEMO_EPISODES closed-loop episodes (default 10) with the committed checkpoint. Records the run
# as a rosbag2, prints success rate, left/right split, time to target, command jerk and policy
# latency, and writes out/demo/report.html (+ report.md, result.json, PNG plots).
#
# Environment overrides: DEMO_EPISODES (10), DEMO_SEED (1000: targets unseen in the demonstrations,
# which use seeds from 0), DEMO_CHECKPOINT (models/reach_image.ckpt), DEMO_BASELINE (empty; e.g.
# models/reach_image_mse.ckpt to run the MSE regression baseline after it, side by side),
# DEMO_OUT (out/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
episodes=${DEMO_EPISODES:-10}
seed=${DEMO_SEED:-1000}
ckpt=${DEMO_CHECKPOINT:-models/reach_image.ckpt}
baseline=${DEMO_BASELINE:-}
out=${DEMO_OUT:-out/demo}
if [ ! -f "$ckpt" ]; then
  echo "[demo] checkpoint $ckpt not found (make demos && make train)" >&2
  exit 1
fi
labels=(diffusion)
ckpts=("$ckpt")
if [ -n "$baseline" ]; then
  labels+=(mse_regression)
  ckpts+=("$baseline")
fi
start=$(date +%s)
dp_eval closed-loop "${ckpts[@]}" --labels "${labels[@]}" --episodes "$episodes" --seed "$seed" \
  --out "$out" --record
echo "[demo] done in $(( $(date +%s) - start )) s: open $out/report.html"
