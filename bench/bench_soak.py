"""Soak benchmark: the embedded closed loop through the real graph for a long run (30 min default).

What runs: the graph of `sim.launch.py` as separate OS processes (dp_bringup's ProcessGroup: the
same executables and parameter files as `make demo`: sim_node, policy_node with
models/reach_image.ckpt, follower_node, over DDS on simulated time), driven episode after episode
by `dp_eval closed-loop --attach` in another process. Every `--every` seconds (30) it records:
- each process's resident memory (VmRSS from /proc; the three nodes and the dp_eval driver);
- policy_node's input rings (PolicyStatus.inputs[].buffered: messages held per stream);
- policy_node's latency p50/p99 (PolicyStatus: observation to chunk, its recent window);
- follower_node's control period error: the median of its statuses' p99 and the max since the
  last sample (FollowerStatus at 10 Hz, each over the periods since the one before; wall clock:
  see --use-sim-time);
- episodes finished and succeeded (TaskStatus.done edges).
At the end: soak.csv (one row per sample), soak.json (rows + verdict), soak.png (RSS, latency,
period error over time) in --out, the table on stdout, and the verdict:
- memory: no process's RSS grows by more than 5% from its value at 2 min to the run's end (max of
  the last 5 min);
- latency: policy p99 of the last 5 min within 20% of the first 5 min (medians of the samples).

Run alone on the machine (it measures the machine as much as the code):
    . scripts/env.sh && python bench/bench_soak.py --minutes 30 --out out/soak
Exit code 0 when both verdicts hold, 1 otherwise, 2 when the graph failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODES = ('sim_node', 'policy_node', 'follower_node')
RSS_GROWTH_MAX = 0.05
LATENCY_DRIFT_MAX = 0.20


def rss_mib(pid: int) -> float:
    """Resident set size of a process (MiB); NaN once it is gone."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float('nan')


class Monitor:
    """The statuses of the graph, as the latest message of each (a thread spins them)."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from dp_msgs.msg import FollowerStatus, PolicyStatus, TaskStatus
        self.rclpy = rclpy
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node('soak_monitor', context=self.ctx)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.policy = self.follower = None
        self.episodes = self.successes = 0
        self._done = False
        n = self.node
        n.create_subscription(PolicyStatus, '/policy_node/status',
                              lambda m: setattr(self, 'policy', m), latched)
        self.period_p99s, self.period_max = [], 0.0
        n.create_subscription(FollowerStatus, '/follower_node/status', self._on_follower, latched)
        n.create_subscription(TaskStatus, '/task_status', self._on_task, latched)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:   # close(): the context went first
            pass

    def _on_follower(self, msg):
        # Each status covers the control periods since the one before (10 Hz): kept until the
        # next sample, which takes the median p99 and the max over them.
        self.follower = msg
        if msg.period_error_p99_s == msg.period_error_p99_s:   # not NaN
            self.period_p99s.append(msg.period_error_p99_s)
            self.period_max = max(self.period_max, msg.period_error_max_s)

    def take_period_errors(self):
        import numpy as np
        p99s, pmax = self.period_p99s, self.period_max
        self.period_p99s, self.period_max = [], 0.0
        return (float(np.median(p99s)) if p99s else float('nan')), pmax

    def _on_task(self, msg):
        if msg.done and not self._done:
            self.episodes += 1
            self.successes += int(msg.success)
        self._done = msg.done

    def close(self):
        self.rclpy.try_shutdown(context=self.ctx)
        self.thread.join(timeout=5.0)


def sample(t_min: float, pids: dict, mon: Monitor) -> dict:
    row = {'t_min': round(t_min, 2), 'episodes': mon.episodes, 'successes': mon.successes}
    for name, pid in pids.items():
        row[f'rss_{name}_mib'] = round(rss_mib(pid), 1)
    p, f = mon.policy, mon.follower
    if p is not None:
        row['policy_latency_p50_ms'] = round(p.latency_p50_s * 1e3, 2)
        row['policy_latency_p99_ms'] = round(p.latency_p99_s * 1e3, 2)
        row['policy_chunks'] = int(p.chunks_published)
        for i in p.inputs:
            row[f'buffered_{i.topic.strip("/").replace("/", "_")}'] = int(i.buffered)
    if f is not None:
        p99, pmax = mon.take_period_errors()
        row['follower_period_error_p99_us'] = round(p99 * 1e6, 1)    # median of the statuses'
        row['follower_period_error_max_us'] = round(pmax * 1e6, 1)   # max since the last sample
        row['follower_chunks_accepted'] = int(f.chunks_accepted)
    return row


def verdict(rows: list, minutes: float) -> dict:
    """RSS growth from 2 min to the end per process; policy p99 first vs last 5 min."""
    import numpy as np
    out = {'rss_growth': {}, 'ok': True}
    t = np.array([r['t_min'] for r in rows])
    for key in [k for k in rows[0] if k.startswith('rss_')]:
        v = np.array([r.get(key, np.nan) for r in rows], dtype=float)
        base = v[np.argmin(np.abs(t - 2.0))]
        end = np.nanmax(v[t >= min(t[-1], max(2.0, minutes - 5.0))])
        growth = float(end / base - 1.0)
        out['rss_growth'][key] = {'at_2min_mib': float(base), 'end_max_mib': float(end),
                                  'growth': round(growth, 4)}
        out['ok'] &= bool(growth <= RSS_GROWTH_MAX)
    lat = np.array([r.get('policy_latency_p99_ms', np.nan) for r in rows], dtype=float)
    first = float(np.nanmedian(lat[t <= 5.0]))
    last = float(np.nanmedian(lat[t >= min(t[-1], minutes - 5.0)]))
    out['latency_p99_ms'] = {'first_5min': first, 'last_5min': last,
                             'drift': round(last / first - 1.0, 4)}
    out['ok'] &= bool(abs(last / first - 1.0) <= LATENCY_DRIFT_MAX)
    return out


def plot(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    t = [r['t_min'] for r in rows]
    fig, ax = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for key in [k for k in rows[0] if k.startswith('rss_')]:
        ax[0].plot(t, [r.get(key) for r in rows], label=key[4:-4])
    ax[0].set_ylabel('RSS (MiB)')
    ax[0].legend(fontsize=8)
    for key in ('policy_latency_p50_ms', 'policy_latency_p99_ms'):
        ax[1].plot(t, [r.get(key) for r in rows], label=key[7:])
    ax[1].set_ylabel('policy latency (ms)')
    ax[1].legend(fontsize=8)
    for key in ('follower_period_error_p99_us', 'follower_period_error_max_us'):
        ax[2].plot(t, [r.get(key) for r in rows], label=key[9:])
    ax[2].set_ylabel('follower period error (us)')
    ax[2].legend(fontsize=8)
    ax[2].set_xlabel('minutes')
    fig.suptitle('soak: embedded closed loop through the real graph')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(rows: list, every_min: float = 5.0) -> str:
    keys = ['t_min', 'episodes', 'successes'] + [k for k in rows[0] if k.startswith('rss_')] + [
        'buffered_camera_image_raw', 'buffered_joint_states', 'policy_latency_p50_ms',
        'policy_latency_p99_ms', 'follower_period_error_p99_us', 'follower_period_error_max_us']
    keys = [k for k in keys if any(k in r for r in rows)]
    picked, next_t = [], 0.0
    for r in rows:
        if r['t_min'] >= next_t - 1e-6 or r is rows[-1]:
            picked.append(r)
            next_t = r['t_min'] + every_min
    lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
    lines += ['| ' + ' | '.join(str(r.get(k, '')) for k in keys) + ' |' for r in picked]
    return '\n'.join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--minutes', type=float, default=30.0)
    ap.add_argument('--every', type=float, default=30.0, help='seconds between samples')
    ap.add_argument('--out', default='out/soak')
    ap.add_argument('--checkpoint', default=None, help="policy_node's checkpoint (default: "
                    "sim.launch.py's, models/reach_image.ckpt)")
    ap.add_argument('--use-sim-time', default='false', choices=['true', 'false'],
                    help="sim.launch.py's use_sim_time. false (default): every node on the wall "
                         "clock, as on a real arm, so the follower's 500 Hz loop runs at real-time "
                         "priority and its period error means something (on /clock it steps on "
                         "simulated time and reports none)")
    a = ap.parse_args(argv)
    from dp_bringup.graphs import GRAPHS
    from dp_bringup.starter import ProcessGroup

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    args = {'use_sim_time': a.use_sim_time}
    if a.checkpoint:
        args['checkpoint'] = a.checkpoint
    group = ProcessGroup(GRAPHS['sim.launch.py'].build(args),
                         log_dir=str(out / 'logs'), quiet=True)
    group.start()
    driver = subprocess.Popen(
        ['dp_eval', 'closed-loop', '--attach', '--episodes', '100000', '--no-progress',
         '--out', str(out / 'eval')], stdout=open(out / 'driver.log', 'w'), stderr=subprocess.STDOUT)
    pids = {name: group.procs[name].pid for name in NODES}
    pids['dp_eval'] = driver.pid
    mon = Monitor()
    rows, t0, failed = [], time.monotonic(), ''
    try:
        while time.monotonic() - t0 < a.minutes * 60.0:
            time.sleep(max(0.0, a.every - (time.monotonic() - t0) % a.every))
            dead = group.dead_required() or (['dp_eval'] if driver.poll() is not None else [])
            if dead:
                failed = f'{dead[0]} exited'
                break
            rows.append(sample((time.monotonic() - t0) / 60.0, pids, mon))
            print(json.dumps(rows[-1]), flush=True)
    except KeyboardInterrupt:
        failed = 'interrupted'
    finally:
        driver.send_signal(signal.SIGINT)
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            driver.kill()
        mon.close()
        group.stop()
    if len(rows) < 2:
        print(f'soak: no samples ({failed or "too short"})', file=sys.stderr)
        return 2
    with open(out / 'soak.csv', 'w', newline='') as fh:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k != 't_min', k))
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    v = verdict(rows, rows[-1]['t_min'])
    v['failed'] = failed
    (out / 'soak.json').write_text(json.dumps({'rows': rows, 'verdict': v}, indent=1))
    plot(rows, out / 'soak.png')
    print(table(rows))
    print(json.dumps(v, indent=1))
    print(f'soak: {"PASS" if v["ok"] and not failed else "FAIL"} ({out}/soak.png)')
    return 0 if v['ok'] and not failed else (2 if failed else 1)


if __name__ == '__main__':
    os.chdir(ROOT)
    sys.exit(main())
