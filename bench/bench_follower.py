"""Benchmark of the follower's command loop: period error p50/p99/max and CPU share at 500 Hz.

Rows:
- `ControlLoop, empty tick`: the scheduling alone (coarse sleep + short spin-wait), in this process.
- `Follower.step`: CPU time of one control step of the ROS-free core (7 joints, chunks every 0.1 s).
- `follower_node ...`: the node as deployed, in its own OS process (python -m
  dp_controller.follower_node); this process plays the policy (16-point chunks at 10 Hz, stamped
  30 ms in the past) and the robot (joint states at 100 Hz). Period errors come from the node's
  own FollowerStatus (status_rate_hz 1: one p50/p99/max per 1-s window; the table gives the
  median window p50, the median and worst window p99 and the overall max). CPU share is the
  node process's utime + stime (/proc) over the measured wall time, in % of one core.
- `+ policy load` (default, `--load policy`): the policy benchmark's work in another process during
  the measurement: the CPU-default Diffusion Policy with one 96x96 camera (random weights) predicting
  chunks back to back on ONNX Runtime with 1 thread, so it keeps the other core busy the way the
  policy node does, with its memory traffic. `--load busy`: a process spinning `while True: pass`.

Run: `python bench/bench_follower.py [--seconds 10]` (with the workspace sourced:
`. scripts/env.sh`). Machine load from other processes shows in the numbers: the load average is
printed with the table.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JOINTS = ['joint1', 'joint2', 'joint3']
CLK_TCK = os.sysconf('SC_CLK_TCK')


POLICY_LOAD = """
import tempfile
from pathlib import Path
import numpy as np
from dp_policy.checkpoint import create_untrained_checkpoint, load_checkpoint
from dp_policy.policy import DiffusionPolicy
d = Path(tempfile.mkdtemp())
path = create_untrained_checkpoint(d / 'load.ckpt', ['joint1', 'joint2', 'joint3'], ['front'], (96, 96),
                                   preset='cpu_default')
pol = DiffusionPolicy(load_checkpoint(path), backend='onnxruntime', num_threads=1)
m = pol.meta
state = np.zeros((1, m.n_obs_steps, m.state_dim), np.float32)
images = {'front': np.zeros((1, m.n_obs_steps, 96, 96, 3), np.uint8)}
pol.predict(state, images)
print('ready', flush=True)
while True:
    pol.predict(state, images)
"""


def load_process(kind):
    """The load on the other core: 'policy' (chunks back to back, see the module doc) or 'busy'.
    Returns once the load runs (the policy's ONNX export and warm-up come first)."""
    if kind == 'busy':
        return subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    proc = subprocess.Popen([sys.executable, '-c', POLICY_LOAD], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != 'ready':
        proc.kill()
        proc.wait()
        raise RuntimeError(f'policy load process did not start (rc {proc.poll()})')
    return proc


def proc_cpu_s(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime


def thread_cpu_s(pid):
    """{tid: (name, policy, utime + stime seconds)} of every thread of a process."""
    out = {}
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{tid}/stat') as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index('(') + 1:raw.rindex(')')]
        fields = raw.rsplit(')', 1)[1].split()
        out[tid] = (name, int(fields[38]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def thread_breakdown(before, after, wall):
    """'control 12%, other threads 9% / 4% / 2%': CPU per thread over the window (the control thread
    is the one under SCHED_FIFO, policy 1, when it runs with a priority)."""
    rows = []
    for tid, (name, policy, cpu) in after.items():
        rows.append((cpu - before.get(tid, (name, policy, 0.0))[2], policy == 1))
    rows.sort(reverse=True)
    ctrl = [c for c, fifo in rows if fifo]
    others = [c for c, fifo in rows if not fifo]
    head = f'control thread {100 * ctrl[0] / wall:.0f}%, ' if ctrl else ''
    return head + 'busiest other threads ' + ' / '.join(f'{100 * c / wall:.0f}%' for c in others[:3])


def bench_control_loop(seconds, rate_hz, spin_s, priority):
    sys.path.insert(0, str(ROOT / 'src' / 'dp_controller'))
    from dp_controller.control_loop import ControlLoop
    loop = ControlLoop(rate_hz, lambda k, t: None, spin_s=spin_s,
                       stats_size=int(seconds * rate_hz) + 10, priority=priority)
    loop.start()
    time.sleep(0.5)
    loop.period_error_stats(reset=True)
    c0, t0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu = (time.process_time() - c0) / (time.monotonic() - t0)
    p50, p99, pmax = loop.period_error_stats()
    loop.stop()
    return dict(p50=p50, p99=p99, p99_worst=p99, max=pmax, cpu=cpu,
                notes=f'overruns {loop.overruns}' + (' (FIFO refused)' if priority and not loop.realtime else ''))


def bench_core_step(mode, n=5000):
    sys.path.insert(0, str(ROOT / 'src' / 'dp_controller'))
    from dp_controller.config import FollowerConfig
    from dp_controller.follower import Follower
    names = [f'j{i}' for i in range(7)]
    cfg = FollowerConfig(joint_names=names, execution_mode=mode)
    f = Follower(cfg)
    f.start(np.zeros(7), 0.0)
    t = np.arange(16) * 0.1
    best = float('inf')
    for rep in range(3):
        c0 = time.thread_time()
        for k in range(rep * n, (rep + 1) * n):
            now = k * cfg.period_s
            if k % 50 == 0:
                f.on_chunk(now - 0.03, names, t, 0.3 * np.sin(now + t)[:, None] * np.ones(7),
                           None, now)
            f.step(now)
        best = min(best, (time.thread_time() - c0) / n)
    return best


def bench_node(seconds, rate_hz, output_mode, execution_mode, load, spin_s, priority):
    """load: None, 'policy' or 'busy' (load_process)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState

    from dp_common.trajectories import arrays_to_joint_trajectory
    from dp_msgs.msg import FollowerStatus

    params = Path(tempfile.mkdtemp()) / 'bench_follower.yaml'
    params.write_text(f"""follower_node:
  ros__parameters:
    joint_names: {JOINTS}
    control_rate_hz: {rate_hz}
    output_mode: {output_mode}
    controller_name: ''
    execution_mode: {execution_mode}
    status_rate_hz: 1.0
    spin_wait_s: {spin_s}
    realtime_priority: {priority}
""")
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(150 + os.getpid() % 80)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    node_proc = subprocess.Popen(
        [sys.executable, '-m', 'dp_controller.follower_node', '--ros-args',
         '--params-file', str(ROOT / 'config' / 'follower.yaml'), '--params-file', str(params)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ['ROS_DOMAIN_ID'] = env['ROS_DOMAIN_ID']
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    busy = None
    try:
        node = rclpy.create_node('bench_follower_driver', context=ctx)
        from trajectory_msgs.msg import JointTrajectory
        chunk_pub = node.create_publisher(
            JointTrajectory, 'trajectory', QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        js_pub = node.create_publisher(JointState, 'joint_states', 10)
        statuses = []
        node.create_subscription(
            FollowerStatus, 'follower_node/status', statuses.append,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))

        def now():
            return node.get_clock().now().nanoseconds * 1e-9

        def wave(t):
            t = np.asarray(t)[:, None]
            return np.concatenate([0.5 * np.sin(1.5 * t), 0.3 * np.cos(1.1 * t) - 0.3,
                                   0.2 * np.sin(2.3 * t + 0.5)], axis=1)

        def publish_js():
            js_pub.publish(JointState(name=JOINTS, position=wave([now()])[0].tolist()))

        def publish_chunk():
            stamp = now() - 0.03
            t = np.arange(16) * 0.1
            chunk_pub.publish(arrays_to_joint_trajectory(JOINTS, t, wave(stamp + t), stamp=stamp))

        node.create_timer(0.01, publish_js)
        node.create_timer(0.1, publish_chunk)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.05)
        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        end = time.monotonic() + 60.0
        while not (statuses and statuses[-1].state_label == 'following'):
            if time.monotonic() > end:
                raise RuntimeError('follower_node did not start following within 60 s')
            time.sleep(0.1)
        if load:
            busy = load_process(load)
        time.sleep(2.0)
        n0 = len(statuses)
        c0, t0, th0 = proc_cpu_s(node_proc.pid), time.monotonic(), thread_cpu_s(node_proc.pid)
        time.sleep(seconds)
        wall = time.monotonic() - t0
        cpu = (proc_cpu_s(node_proc.pid) - c0) / wall
        threads = thread_breakdown(th0, thread_cpu_s(node_proc.pid), wall)
        windows = [s for s in statuses[n0:] if np.isfinite(s.period_error_p99_s)]
        stop.set()
        thread.join(5.0)
        last = statuses[-1]
        notes = f'{threads}; trips {last.watchdog_trips}, rejected ' + (
            ', '.join(f'{c.name} {c.count}' for c in last.rejected) or '0')
        p50 = np.array([s.period_error_p50_s for s in windows])
        p99 = np.array([s.period_error_p99_s for s in windows])
        pmax = np.array([s.period_error_max_s for s in windows])
        return dict(p50=float(np.median(p50)), p99=float(np.median(p99)),
                    p99_worst=float(p99.max()), max=float(pmax.max()), cpu=cpu, notes=notes)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        rclpy.try_shutdown(context=ctx)
        node_proc.send_signal(signal.SIGINT)
        try:
            node_proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node_proc.kill()
            node_proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=10.0, help='measured time per row (s)')
    ap.add_argument('--rate-hz', type=float, default=500.0)
    ap.add_argument('--spin-s', type=float, default=0.0001, help='spin-wait before each deadline (s)')
    ap.add_argument('--priority', type=int, nargs='+', default=[50, 0],
                    help='SCHED_FIFO priorities of the control thread to compare (0 = normal)')
    ap.add_argument('--quick', action='store_true', help='only the deployed default rows')
    ap.add_argument('--load', choices=['policy', 'busy'], default='policy',
                    help='what loads the other core in the loaded rows (module doc)')
    args = ap.parse_args()
    label = ' + policy load' if args.load == 'policy' else ' + busy core'

    rows = []
    for prio in args.priority:
        tag = f'FIFO {prio}' if prio > 0 else 'normal priority'
        for load in (None, args.load):
            busy = load_process(load) if load else None
            try:
                r = bench_control_loop(args.seconds, args.rate_hz, args.spin_s, prio)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            rows.append((f'ControlLoop, empty tick, {tag}{label if load else ""}', r))
        node_rows = [('forward_command', 'receding_horizon', None),
                     ('forward_command', 'receding_horizon', args.load)]
        if not args.quick:
            node_rows += [('forward_command', 'temporal_ensemble', args.load),
                          ('joint_trajectory', 'receding_horizon', args.load)]
        for output_mode, execution_mode, load in node_rows:
            r = bench_node(args.seconds, args.rate_hz, output_mode, execution_mode, load,
                           args.spin_s, prio)
            rows.append((f'follower_node {output_mode}, {execution_mode}, {tag}'
                         f'{label if load else ""}', r))

    load1, load5, _ = os.getloadavg()
    print(f'\nfollower command loop at {args.rate_hz:g} Hz, {args.seconds:g} s per row, '
          f'spin-wait {args.spin_s * 1e3:g} ms, {os.cpu_count()} CPUs, '
          f'load average {load1:.2f} (1 min) {load5:.2f} (5 min)')
    print('| row | period error p50 (ms) | p99 (ms) median / worst 1-s window | max (ms) '
          '| CPU (% of one core) | notes |')
    print('|---|---|---|---|---|---|')
    for name, r in rows:
        print(f'| {name} | {r["p50"] * 1e3:.3f} | {r["p99"] * 1e3:.3f} / {r["p99_worst"] * 1e3:.3f} '
              f'| {r["max"] * 1e3:.3f} | {r["cpu"] * 100:.1f} | {r["notes"]} |')
    print('\n| Follower.step, 7 joints (ROS-free core) | CPU per step (us) | % of one core at rate |')
    print('|---|---|---|')
    for mode in ('receding_horizon', 'latest', 'temporal_ensemble'):
        s = bench_core_step(mode)
        print(f'| {mode} | {s * 1e6:.1f} | {s * args.rate_hz * 100:.1f} |')
    print('\ntargets (issue 4): p99 <= 0.2 ms, max < 3 ms, CPU < 20% of one core')


if __name__ == '__main__':
    main()
