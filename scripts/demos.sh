#!/usr/bin/env bash
# `make demos`: record the demonstration set with the embedded simulation.
#
# sim_node + demonstrator_node + recorder_node run as three processes over DDS (simulated time
# faster than real time); every episode becomes one rosbag2 folder in data/demos/episode_XXXX
# (failed ones, if any, in data/demos/.failed/, logs and summary.json in data/demos/.logs/).
# Fixed seed: the same targets, sides and timing every run. Prints the time taken.
#
# Environment overrides: DEMOS_OUT (data/demos), DEMOS_EPISODES (200), DEMOS_SEED (0),
# DEMOS_RTF (real-time factor, 6), DEMOS_STORAGE (sqlite3 | mcap).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMOS_OUT:-data/demos}
episodes=${DEMOS_EPISODES:-200}
seed=${DEMOS_SEED:-0}
rtf=${DEMOS_RTF:-6}
storage=${DEMOS_STORAGE:-sqlite3}
start=$(date +%s)
python -m dp_sim.record_demos --out "$out" --episodes "$episodes" --seed "$seed" \
  --real-time-factor "$rtf" --storage "$storage" --overwrite
echo "[demos] $episodes episodes into $out in $(( $(date +%s) - start )) s"
