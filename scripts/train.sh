#!/usr/bin/env bash
# `make train`: train the committed demo checkpoints from `make demos` (fixed seed).
#
#   models/reach_image.ckpt       Diffusion Policy (cpu_default preset: small CNN per camera,
#                                 U-Net 64/128/256, DDPM 100 steps, DDIM 10 at inference)
#   models/reach_image_mse.ckpt   MSE regression baseline, same encoders and data (for comparison)
#
# Training is step-based (not time-based) so that the result does not depend on the machine's
# load; runs/ keeps the resume state, loss.csv and loss.png of each run. Environment overrides:
# DEMOS (data/demos), TRAIN_STEPS (diffusion, 7000), TRAIN_STEPS_MSE (regression baseline, 3000),
# TRAIN_SEED (0), TRAIN_THREADS (2), TRAIN_MODELS ("diffusion regression").
set -euo pipefail
cd "$(dirname "$0")/.."
demos=${DEMOS:-data/demos}
steps_diffusion=${TRAIN_STEPS:-7000}
steps_mse=${TRAIN_STEPS_MSE:-3000}
seed=${TRAIN_SEED:-0}
threads=${TRAIN_THREADS:-2}
models=${TRAIN_MODELS:-diffusion regression}
if ! compgen -G "$demos/episode_*" > /dev/null; then
  echo "[train] no demonstrations in $demos: run 'make demos' first" >&2
  exit 1
fi
mkdir -p models runs
for model in $models; do
  case $model in
    diffusion) run=runs/reach_image; out=models/reach_image.ckpt; steps=$steps_diffusion ;;
    regression) run=runs/reach_image_mse; out=models/reach_image_mse.ckpt; steps=$steps_mse ;;
    *) echo "[train] unknown model $model" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  dp_train "$demos" --out "$run" --model "$model" --preset cpu_default \
    --camera overhead=/camera/image_raw --joint-names joint1,joint2,joint3 \
    --joint-states-topic /joint_states --command-topic /forward_position_controller/commands \
    --episode-topic /task_status --steps "$steps" --seed "$seed" --threads "$threads" --no-resume
  cp "$run/policy.ckpt" "$out"
  echo "[train] $model: $steps steps in $(( $(date +%s) - start )) s -> $out ($(du -h "$out" | cut -f1))"
done
