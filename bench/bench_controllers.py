"""Benchmark: the follower at the REAL ros2_control controllers, forward_command vs joint_trajectory.

One row per output mode: recorded policy chunks (test/data/reach_policy_chunks, 3 episodes of the
embedded task) replayed through follower_node (the embedded arm's robot config at 500 Hz) onto the
real controller manager with mock hardware (dp_eval.controllers.ControllerRig; ros2_control from
`make ros2-control` or an apt ROS 2), measured from /joint_states of the real
joint_state_broadcaster, by its stamps:
- tracking error: the arm vs the ROS-free Follower core run on the same chunks (what the follower
  decided; median / p99 / max over joints' max), and vs the newest chunk (median / p95; the
  follower blends and averages chunks, so this is mostly the policy's own chunk-to-chunk jumps);
- command jerk at the arm: third differences of the broadcaster's positions over consecutive
  controller cycles (RMS / max, rad/s^3), over the whole replay;
- largest step per cycle (as speed) and speed over 100 ms windows;
- `clamps`: the controller manager's "out of limits" log lines (throttled), i.e. commands it
  clamped to the URDF limits;
- the follower's largest control-loop period error (its FollowerStatus) and the largest gap
  between two of its outputs as received here (10 ms grain: polled).

Run: `python bench/bench_controllers.py [--repeat 1]` (workspace sourced: `. scripts/env.sh`).
Skips with a message where ros2_control is not installed.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BAG = ROOT / 'test' / 'data' / 'reach_policy_chunks'


def run_mode(output_mode: str, log_dir: Path) -> dict:
    from dp_eval.controllers import (RATE_HZ, ControllerRig, chunk_error, core_error,
                                     jerk_stats, load_chunks, step_velocities, steps_per_cycle)
    chunks, starts = load_chunks(BAG)
    rig = ControllerRig(log_dir, output_mode)
    try:
        rig.start()
        t0 = rig.replay(chunks)
        import time
        t_end = time.time()
        time.sleep(0.3)
    finally:
        rig.stop()
    js = rig.joint_states
    first = rig.published[0][0]
    core_err = core_error(rig, t_end)
    chunk_err = chunk_error(rig, chunks, starts, t0, t_end)
    jrms, jmax = jerk_stats(js, first - 0.05, t_end)
    steps = steps_per_cycle(js) * RATE_HZ
    v100, _ = step_velocities(js, min_dt=0.1)
    clamps = sum('out of limits' in line
                 for line in (log_dir / 'ros2_control_node.log').read_text().splitlines())
    period_max = max((m.period_error_max_s for _, m in rig.statuses
                      if np.isfinite(m.period_error_max_s)), default=float('nan'))
    sent = np.array([c[0] for c in rig.commands] if output_mode == 'forward_command'
                    else [t[0] for t in rig.trajectories])
    sent = sent[(sent > first) & (sent < t_end)]
    gap = float(np.max(np.diff(sent))) if len(sent) > 1 else float('nan')
    return dict(mode=output_mode, period_max=period_max, gap=gap, core_med=np.median(core_err),
                core_p99=np.percentile(core_err, 99), core_max=core_err.max(),
                chunk_med=np.median(chunk_err), chunk_p95=np.percentile(chunk_err, 95),
                jerk_rms=jrms, jerk_max=jmax, step_speed=steps.max(), v100=v100.max(),
                clamps=clamps, samples=len(js))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=1, help='runs per output mode')
    args = parser.parse_args()
    from dp_bringup.mock_arm import find_installation, missing_reason
    if find_installation() is None:
        print(f'bench_controllers: skipped: {missing_reason()}')
        return 0
    rows = []
    for _ in range(args.repeat):
        for mode in ('forward_command', 'joint_trajectory'):
            with tempfile.TemporaryDirectory() as d:
                rows.append(run_mode(mode, Path(d)))
    print(f'\nload average {os.getloadavg()[0]:.2f}; {len(rows)} runs of {BAG.name} '
          '(3 episodes, ~12 s) at 500 Hz\n')
    print('| output mode | arm vs follower core: median / p99 / max (rad) | arm vs newest chunk: '
          'median / p95 (rad) | jerk at the arm RMS / max (rad/s^3) | max speed per cycle / '
          'over 100 ms (rad/s) | clamps | follower period error max (ms) | largest gap in its output (ms) |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['mode']} | {r['core_med']:.4f} / {r['core_p99']:.4f} / {r['core_max']:.4f} "
              f"| {r['chunk_med']:.3f} / {r['chunk_p95']:.3f} | {r['jerk_rms']:.3g} / "
              f"{r['jerk_max']:.3g} | {r['step_speed']:.2f} / {r['v100']:.2f} | {r['clamps']} | "
              f"{1e3 * r['period_max']:.2f} | {1e3 * r['gap']:.0f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
