"""dp_record_demos: record a demonstration set with the embedded simulation.

    dp_record_demos --out DIR --episodes N --seed S [--real-time-factor F] [--storage mcap]

Starts sim_node, recorder_node and demonstrator_node as three OS processes (the interpreter that
runs this script, `python -m dp_sim.<node>`), talking over DDS exactly as they would on a robot,
with simulated time (/clock) running F times faster than the wall clock. Waits for the
demonstrator to finish N successful episodes (a failed one, rare, is repeated on the same side;
sides come in shuffled left/right pairs, so N even gives an exact 50/50 split), stops the recorder (which finalizes its bag) and the
simulation, prints the success rate, the left/right split and the time taken, and exits 0 when
every episode produced a bag and at least --min-success of them succeeded.

Successful episodes land in DIR/episode_XXXX, failed ones in DIR/.failed/ (hidden: the dataset
reader skips them), the processes' logs and summary.json in DIR/.logs/. The three processes get
their own ROS_DOMAIN_ID (--domain-id; default derived from the process id, 101..200) and
localhost-only discovery, so that recording never mixes with another graph on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def _start(module: str, params: dict, log_path: Path, env: dict,
           lines: list | None = None) -> subprocess.Popen:
    cmd = [sys.executable, '-m', f'dp_sim.{module}', '--ros-args']
    for k, v in params.items():
        if isinstance(v, bool):
            v = 'true' if v else 'false'
        cmd += ['-p', f'{k}:={v}']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, bufsize=1)
    log = open(log_path, 'w')  # noqa: SIM115 - closed by the reader thread

    def pump():
        with log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if lines is not None:
                    lines.append(line.rstrip('\n'))
    threading.Thread(target=pump, daemon=True).start()
    return proc


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog='dp_record_demos', description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', required=True, type=Path, help='output folder (created)')
    ap.add_argument('--episodes', type=int, default=200,
                    help='number of successful episodes (a failed one is repeated; default 200)')
    ap.add_argument('--seed', type=int, default=0, help='seed of targets and demonstrator')
    ap.add_argument('--real-time-factor', type=float, default=6.0,
                    help='simulated seconds per wall second (default 6)')
    ap.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    ap.add_argument('--camera-rate-hz', type=float, default=20.0)
    ap.add_argument('--joint-state-rate-hz', type=float, default=50.0)
    ap.add_argument('--command-rate-hz', type=float, default=50.0)
    ap.add_argument('--image-size', type=int, default=96, help='square camera image size (px)')
    ap.add_argument('--done-after-success-s', type=float, default=0.8,
                    help='simulated seconds recorded after success (holding at the target)')
    ap.add_argument('--domain-id', type=int, default=None,
                    help='ROS_DOMAIN_ID of the recording graph (default: 101 + pid %% 100)')
    ap.add_argument('--min-success', type=float, default=0.95,
                    help='exit 1 if fewer episodes than this fraction succeed')
    ap.add_argument('--keep-failed', action='store_true', help='keep failed episodes in --out')
    ap.add_argument('--overwrite', action='store_true',
                    help='delete episodes already in --out first')
    args = ap.parse_args(argv)
    if args.episodes < 1:
        ap.error('--episodes must be >= 1')
    if args.real_time_factor <= 0:
        ap.error('--real-time-factor must be > 0')
    if args.domain_id is not None and not 0 <= args.domain_id <= 232:
        ap.error('--domain-id must be in 0..232')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out.expanduser().resolve()
    old = sorted(out.glob('episode_*')) if out.exists() else []
    if old and not args.overwrite:
        print(f'dp_record_demos: {out} already holds episodes (use --overwrite)', file=sys.stderr)
        return 2
    for p in old + [out / '.failed', out / '.logs']:
        if p.is_dir():
            shutil.rmtree(p)
    logs = out / '.logs'
    logs.mkdir(parents=True, exist_ok=True)
    env = _isolated_env(args.domain_id)
    t0 = time.monotonic()
    rec_lines: list[str] = []
    demo_lines: list[str] = []
    procs = _start_recorder_and_sim(args, out, logs, env, rec_lines)
    if procs is None:
        return 1
    rec, sim = procs
    demo = _start('demonstrator_node', {'use_sim_time': True, 'episodes': args.episodes,
                                        'seed': args.seed, 'min_command_subscribers': 2,
                                        'count_successes_only': True, 'balanced_sides': True,
                                        'command_rate_hz': args.command_rate_hz},
                  logs / 'demonstrator_node.log', env, demo_lines)
    rc_demo = _wait_for_demonstrator(args, t0, demo, sim, rec, rec_lines)
    # Let the recorder write what is still under way: wait for every episode's RECORDED line.
    summaries = [json.loads(x.split(' ', 1)[1]) for x in demo_lines
                 if x.startswith('DEMONSTRATOR_SUMMARY ')]
    n_done = summaries[0]['episodes'] if summaries else 0
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and rec.poll() is None \
            and sum(x.startswith('RECORDED ') for x in rec_lines) < n_done:
        time.sleep(0.1)
    _stop(demo)
    codes = {'demonstrator': rc_demo, 'recorder': _stop(rec), 'sim': _stop(sim)}
    wall = time.monotonic() - t0
    time.sleep(0.2)  # reader threads drain
    episodes = [json.loads(x.split(' ', 1)[1]) for x in rec_lines if x.startswith('RECORDED ')]
    summary = _summary(args, out, episodes, wall, codes)
    (logs / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    n = len(episodes)
    return 0 if (rc_demo == 0 and summary['successful'] >= args.episodes and n == n_done
                 and summary['successful'] >= args.min_success * n) else 1


def _isolated_env(domain_id) -> dict:
    """The child processes' environment: a ROS domain of this run's own, this host only."""
    env = dict(os.environ)
    env.setdefault('MUJOCO_GL', 'egl')
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    env['ROS_DOMAIN_ID'] = str(domain_id if domain_id is not None else 101 + os.getpid() % 100)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONUNBUFFERED'] = '1'
    return env


def _wait_for_line(marker: str, lines: list, procs, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not any(marker in x for x in lines):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _start_recorder_and_sim(args, out, logs, env, rec_lines):
    """The recorder, then the simulation once the recorder is up; (recorder, sim) once the
    recorder receives every sensor topic and the task status (discovery can take a moment,
    longer on a busy machine, and an episode whose start the recorder missed is not recorded),
    None (both stopped, said why) if that never comes."""
    rec = _start('recorder_node', {'output_dir': str(out), 'storage': args.storage,
                                   'keep_failed': args.keep_failed},
                 logs / 'recorder_node.log', env, rec_lines)
    if not _wait_for_line('RECORDER_READY', rec_lines, [rec], 60.0):
        print('dp_record_demos: recorder did not start; see ' + str(logs), file=sys.stderr)
        _stop(rec)
        return None
    sim = _start('sim_node', {'publish_clock': True, 'real_time_factor': args.real_time_factor,
                              'seed': args.seed, 'camera_rate_hz': args.camera_rate_hz,
                              'joint_state_rate_hz': args.joint_state_rate_hz,
                              'image_width': args.image_size, 'image_height': args.image_size,
                              'done_after_success_s': args.done_after_success_s},
                 logs / 'sim_node.log', env)
    if not _wait_for_line('RECORDER_MATCHED', rec_lines, [rec, sim], 120.0):
        print('dp_record_demos: the recorder did not see the simulation; see ' + str(logs),
              file=sys.stderr)
        _stop(sim)
        _stop(rec)
        return None
    return rec, sim


def _wait_for_demonstrator(args, t0, demo, sim, rec, rec_lines):
    """Until the demonstrator exits (its return code), a process dies, or the time budget is
    spent (None): episodes take about 5 s of simulated time, with a generous margin."""
    budget_s = 120.0 + args.episodes * 20.0 / args.real_time_factor
    rc_demo = None
    last_report = time.monotonic()
    try:
        while time.monotonic() - t0 < budget_s:
            rc_demo = demo.poll()
            if rc_demo is not None or sim.poll() is not None or rec.poll() is not None:
                break
            if time.monotonic() - last_report > 30.0:
                last_report = time.monotonic()
                n = sum(x.startswith('RECORDED ') for x in rec_lines)
                print(f'dp_record_demos: {n}/{args.episodes} episodes after '
                      f'{time.monotonic() - t0:.0f} s', flush=True)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    if rc_demo is None:
        print('dp_record_demos: demonstrator did not finish in time (or a process died); stopping',
              file=sys.stderr)
    return rc_demo


def _summary(args, out, episodes: list, wall: float, codes: dict) -> dict:
    """The run's numbers (printed, and as a SUMMARY line for scripts)."""
    n = len(episodes)
    good = [e for e in episodes if e['success']]
    summary = {
        'episodes_requested': args.episodes, 'bags_written': n, 'successful': len(good),
        'success_rate': (len(good) / n) if n else 0.0,
        'left': sum(e['side'] == 'left' for e in good),
        'right': sum(e['side'] == 'right' for e in good),
        'contacts': sum(bool(e['contact']) for e in episodes),
        'sim_s': round(sum(e['duration_s'] or 0.0 for e in episodes), 1),
        'wall_s': round(wall, 1), 'episodes_per_min': round(60.0 * n / wall, 1),
        'real_time_factor': args.real_time_factor, 'seed': args.seed, 'storage': args.storage,
        'out': str(out), 'return_codes': codes,
    }
    print(f"dp_record_demos: {n} episodes recorded, {len(good)}/{args.episodes} successful "
          f"({summary['success_rate']:.0%}), left {summary['left']} / right {summary['right']}, "
          f"{wall:.0f} s wall ({summary['episodes_per_min']} episodes/min) -> {out}")
    print('SUMMARY ' + json.dumps(summary), flush=True)
    return summary


if __name__ == '__main__':
    sys.exit(main())
