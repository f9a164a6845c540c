"""Where a policy puts the arm's tip, open loop, on demonstration windows: joint-space and
end-effector checkpoints compared in the same unit (the tip position, m).

For each checkpoint, on the last --bags demonstrations (held apart from nothing: a diagnosis, not
a score), every --every-th window along the path and the last --rest windows (the arm at rest on
the target):
  path error   mean distance between the predicted and the demonstrated tip over the executed
               steps (n_action_steps), the demonstrated tip by forward kinematics of the commands
  rest error   distance between the mean predicted tip and the demonstrated final tip
  rest motion  mean step-to-step tip motion of the prediction at rest (jitter)
A joint-space checkpoint's chunks go through the forward kinematics of --urdf; an end-effector
checkpoint's are tip poses already (its observation: the forward kinematics of the recorded
joint states, as policy_node computes it).

    python bench/bench_tip_precision.py models/reach_image.ckpt runs/reach_ee/policy.ckpt \
        --bags data/demos --last 12
"""
from __future__ import annotations

import argparse
import glob
import os

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('checkpoints', nargs='+')
    ap.add_argument('--bags', default='data/demos')
    ap.add_argument('--last', type=int, default=12, help='the last N demonstration bags')
    ap.add_argument('--every', type=int, default=5, help='path windows: every N-th step')
    ap.add_argument('--rest', type=int, default=6, help='rest windows: the last N steps')
    ap.add_argument('--urdf', default=None, help='the arm (default: the embedded arm)')
    ap.add_argument('--camera-topic', default='/camera/image_raw')
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from dp_common.ee_space import EndEffectorSpace
    from dp_policy.data.dataset import DatasetConfig, load_episodes
    from dp_policy.policy import DiffusionPolicy
    from dp_sim.env import default_urdf_path

    bags = sorted(glob.glob(os.path.join(args.bags, 'episode_*')))[-args.last:]
    rows = []
    for path in args.checkpoints:
        policy = DiffusionPolicy.from_checkpoint(path, backend='torch', seed=0)
        meta = policy.meta
        arm = EndEffectorSpace(args.urdf or default_urdf_path(), 'tool0', list(meta.joint_names))
        cam = meta.camera_names[0]
        # a checkpoint trained with the arm painted out of the images gets them so (--mask-robot)
        cfg = DatasetConfig(joint_names=list(meta.joint_names), cameras={cam: args.camera_topic},
                            episode_topic='/task_status', dt_s=meta.dt_s,
                            urdf=str(args.urdf or default_urdf_path()),
                            robot_mask=dict(meta.robot_mask or {}))
        eps, _ = load_episodes(bags, cfg, progress=False)
        n, f, k_exec = meta.n_obs_steps, meta.n_obs_steps - 1, meta.n_action_steps

        def tips(ep, k):
            state = ep.state[None, k - n + 1:k + 1]
            if meta.action_space is not None:
                state = arm.vectors(state).astype(np.float32)
            out = policy.predict(state, {cam: ep.images[cam][None, k - n + 1:k + 1]})
            policy.reset()
            a = np.asarray(out.actions[0], dtype=np.float64)
            return (a[:, :3] if meta.action_space is not None else arm.vectors(a)[:, :3])[f:]

        path_err, rest_err, rest_motion = [], [], []
        for ep in eps:
            truth = arm.vectors(ep.action)[:, :3]
            for k in range(n, len(ep) - k_exec, args.every):
                p = tips(ep, k)[:k_exec]
                path_err.append(np.linalg.norm(p[:, :2] - truth[k:k + k_exec, :2], axis=1).mean())
            for k in range(len(ep) - args.rest, len(ep)):
                p = tips(ep, k)[:k_exec, :2]
                rest_err.append(np.linalg.norm(p.mean(0) - truth[-1, :2]))
                rest_motion.append(np.linalg.norm(np.diff(p, axis=0), axis=1).mean())
        rows.append((os.path.relpath(path), meta.space_kind, 1e3 * np.mean(path_err),
                     1e3 * np.mean(rest_err), 1e3 * np.mean(rest_motion), len(path_err),
                     len(rest_err)))
    print(f'{len(bags)} demonstrations from {args.bags} (the last ones)')
    print('| checkpoint | space | path error (mm) | rest error (mm) | rest motion (mm/step) | windows (path / rest) |')
    print('|---|---|---|---|---|---|')
    for name, kind, pe, re, rm, npath, nrest in rows:
        print(f'| {name} | {kind} | {pe:.1f} | {re:.1f} | {rm:.1f} | {npath} / {nrest} |')


if __name__ == '__main__':
    main()
