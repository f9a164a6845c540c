#!/usr/bin/env bash
# `make train`: train the demo checkpoint from `make demos` (fixed seed), in a wall-clock budget.
#
#   models/reach_image.ckpt       Diffusion Policy (cpu_default preset: small CNN per camera,
#                                 U-Net 64/128/256, DDPM 100 steps, DDIM 10 at inference), trained
#                                 for TRAIN_MINUTES (9) of wall time: bf16 autocast where the CPU has
#                                 it, the cosine learning rate decaying over the budget, 10 episodes
#                                 held out and evaluated every 500 steps; the checkpoint kept is the
#                                 best held-out one. With data loading, ~10 minutes on 2 cores.
#   models/reach_image_mse.ckpt   MSE regression baseline, same encoders and data (for comparison),
#                                 only with TRAIN_MODELS="diffusion regression" (3000 steps).
#   models/reach_ee.ckpt          the same Diffusion Policy in END-EFFECTOR space (--action-space
#                                 ee_pose: the stylus tip's pose by the forward kinematics of the
#                                 arm that recorded the demonstrations, src/dp_sim/description/
#                                 arm.urdf) with that arm painted out of the camera images
#                                 (--mask-robot: arm.urdf's camera_optical_frame and the overhead
#                                 camera's intrinsics, fx = fy = 48 / tan(47 deg / 2) = 110.392 px,
#                                 cx = cy = 48 px for 96 x 96, as sim_node's camera_info says), for
#                                 TRAIN_MINUTES_EE (35) of wall time: it drives both embedded arms
#                                 (README "End-effector actions and a second arm"). Only with
#                                 TRAIN_MODELS="ee" (or "diffusion ee").
#
# runs/ keeps the resume state, loss.csv, eval.csv and report.png/report.html of each run.
# Environment overrides: DEMOS (data/demos), TRAIN_MINUTES (diffusion, 9), TRAIN_STEPS (diffusion:
# a step count instead of the time budget), TRAIN_STEPS_MSE (3000), TRAIN_MINUTES_EE (35),
# TRAIN_SEED (0), TRAIN_THREADS (2),
# TRAIN_MODELS ("diffusion"), TRAIN_OUT (models: where the checkpoints are copied).
set -euo pipefail
cd "$(dirname "$0")/.."
demos=${DEMOS:-data/demos}
minutes=${TRAIN_MINUTES:-9}
steps_diffusion=${TRAIN_STEPS:-}
steps_mse=${TRAIN_STEPS_MSE:-3000}
minutes_ee=${TRAIN_MINUTES_EE:-35}
seed=${TRAIN_SEED:-0}
threads=${TRAIN_THREADS:-2}
models=${TRAIN_MODELS:-diffusion}
dest=${TRAIN_OUT:-models}
if ! compgen -G "$demos/episode_*" > /dev/null; then
  echo "[train] no demonstrations in $demos: run 'make demos' first" >&2
  exit 1
fi
mkdir -p "$dest" runs
for model in $models; do
  space=(); kind=$model
  case $model in
    diffusion)
      run=runs/reach_image; out=$dest/reach_image.ckpt
      if [ -n "$steps_diffusion" ]; then budget=(--steps "$steps_diffusion"); else budget=(--max-minutes "$minutes"); fi ;;
    regression)
      run=runs/reach_image_mse; out=$dest/reach_image_mse.ckpt; budget=(--steps "$steps_mse" --holdout 0) ;;
    ee)
      run=runs/reach_ee; out=$dest/reach_ee.ckpt; budget=(--max-minutes "$minutes_ee"); kind=diffusion
      space=(--action-space ee_pose --urdf src/dp_sim/description/arm.urdf
             --mask-robot overhead=camera_optical_frame:110.39244226734033,110.39244226734033,48,48:96x96) ;;
    *) echo "[train] unknown model $model" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  dp_train "$demos" --out "$run" --model "$kind" --preset cpu_default "${space[@]}" \
    --camera overhead=/camera/image_raw --joint-names joint1,joint2,joint3 \
    --joint-states-topic /joint_states --command-topic /forward_position_controller/commands \
    --episode-topic /task_status "${budget[@]}" --seed "$seed" --threads "$threads" --no-resume
  cp "$run/policy.ckpt" "$out"
  echo "[train] $model: $(( $(date +%s) - start )) s -> $out ($(du -h "$out" | cut -f1)); report: $run/report.html"
done
