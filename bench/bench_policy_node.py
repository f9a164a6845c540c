"""Benchmark: policy_node observation-stamp-to-trajectory latency, as a follower sees it.

Setup per scenario, every part its own OS process talking over DDS on loopback:
  synthetic joint states (100 Hz) + synthetic cameras (bgr8, `--camera-hz`) -> policy_node (console
  script, default parameters: trigger observation at 10 Hz, num_threads 1, backend auto) -> this
  process.

Latency = arrival time of a trajectory here - its header.stamp (the newest observation's stamp),
so it holds transport of the images, conversion, alignment, the wait for the next tick (trigger
timer) and inference. Also printed: the node's own inference time (ActionChunk.inference_latency_s)
and the CPU used by the policy_node process (in cores). The checkpoint is the 'cpu_default' preset
with random weights (speed does not depend on the weights).

Scenarios: one 96x96 camera; two 640x480 cameras (resized to the checkpoint's 96x96 in the node).
Target (issue 5): p50 under 40 ms for the CPU-default model on the 2-core machine.

    python bench/bench_policy_node.py [--seconds 15] [--trigger timer observation] [--backend auto]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENSOR = ROOT / 'src' / 'dp_policy_node' / 'test' / 'nodes' / 'synthetic_sensor.py'
JOINTS = ['joint1', 'joint2', 'joint3']


def policy_node_command() -> list[str]:
    prefix = os.environ.get('COLCON_PREFIX_PATH', '').split(os.pathsep)[0]
    installed = Path(prefix) / 'dp_policy_node' / 'lib' / 'dp_policy_node' / 'policy_node'
    if prefix and installed.exists():
        return [sys.executable, str(installed)]
    exe = shutil.which('policy_node')
    return [sys.executable, exe] if exe else [sys.executable, '-m', 'dp_policy_node.policy_node']


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def start(args: list[str], wait_ready: bool = True) -> subprocess.Popen:
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait_ready:
        lines = []
        while not lines or 'ready' not in lines[-1]:
            lines.append(p.stdout.readline())
            if not lines[-1]:
                raise RuntimeError(f'{args[1]} did not start: {"".join(lines)[-2000:]}')
    return p


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_scenario(name: str, cams: list[tuple[str, int, int]], ckpt: str, args) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from dp_common.stamps import stamp_to_ns
    from dp_msgs.msg import ActionChunk, PolicyStatus
    from rclpy.qos import DurabilityPolicy

    topics = [t for t, _, _ in cams]
    procs = [start([sys.executable, str(SENSOR), 'joints', '100'])]
    for topic, w, h in cams:
        procs.append(start([sys.executable, str(SENSOR), 'camera', str(args.camera_hz), str(w),
                            str(h), topic]))
    policy = start(policy_node_command() + [
        '--ros-args', '-p', f'checkpoint:={ckpt}', '-p', f'backend:={args.backend}',
        '-p', f'trigger:={args.trigger_now}', '-p', f'num_threads:={args.num_threads}',
        '-p', 'joint_states_topic:=/joint_states',
        '-p', 'camera_topics:=[' + ','.join(f'"{t}"' for t in topics) + ']'], wait_ready=False)
    procs.append(policy)
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    lat, infer = [], []
    try:
        node = rclpy.create_node('bench_follower', context=ctx)
        ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        state = {'measure': False}

        def on_chunk(msg):
            now = time.time_ns()           # wall clock: the sensors stamp with wall time
            if state['measure']:
                lat.append((now - stamp_to_ns(msg.header.stamp)) * 1e-9)
                infer.append(msg.inference_latency_s)
            state['n'] = state.get('n', 0) + 1
        node.create_subscription(ActionChunk, '/policy_node/action_chunk', on_chunk,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        status = []
        node.create_subscription(PolicyStatus, '/policy_node/status', status.append,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        deadline = time.monotonic() + 600           # warm-up (auto: jit + ONNX export) included
        while state.get('n', 0) < 10 and time.monotonic() < deadline:
            if policy.poll() is not None:
                raise RuntimeError(f'policy_node exited: {policy.stdout.read()[-3000:]}')
            ex.spin_once(timeout_sec=0.1)
        if state.get('n', 0) < 10:
            policy.send_signal(signal.SIGINT)
            raise RuntimeError(f'no chunks within 600 s; policy_node said: '
                               f'{policy.communicate(timeout=30)[0][-3000:]}')
        state['measure'] = True
        cpu0, t0 = cpu_seconds(policy.pid), time.monotonic()
        t_end = t0 + args.seconds
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
        cpu = (cpu_seconds(policy.pid) - cpu0) / (time.monotonic() - t0)
        if status:
            st = status[-1]
            print(f'    status: backend {st.backend}, inputs '
                  + ', '.join(f'{i.topic} {i.rate_hz:.0f} Hz' for i in st.inputs)
                  + f', skipped {[(c.name, c.count) for c in st.skipped]}, rejected '
                  f'{[(c.name, c.count) for c in st.rejected]}', file=sys.stderr, flush=True)
    finally:
        rclpy.try_shutdown(context=ctx)
        stop(procs)
    lat_ms, inf_ms = np.array(lat) * 1e3, np.array(infer) * 1e3
    return {'scenario': name, 'trigger': args.trigger_now, 'chunks': len(lat),
            'rate_hz': len(lat) / args.seconds,
            'p50': np.percentile(lat_ms, 50), 'p99': np.percentile(lat_ms, 99),
            'inf50': np.percentile(inf_ms, 50), 'cpu': cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--seconds', type=float, default=15.0, help='measurement time per scenario')
    ap.add_argument('--trigger', nargs='+', default=['observation', 'timer'],
                    help="policy_node trigger modes to measure ('observation' is the node's default)")
    ap.add_argument('--backend', default='auto', help='policy_node backend parameter')
    ap.add_argument('--num-threads', type=int, default=1, help='policy_node num_threads')
    ap.add_argument('--camera-hz', type=float, default=30.0, help='synthetic camera rate')
    ap.add_argument('--preset', default='cpu_default', help='checkpoint preset (random weights)')
    ap.add_argument('--scenarios', nargs='+', default=['one96', 'two640'],
                    help='one96: one 96x96 camera; two640: two 640x480 cameras')
    args = ap.parse_args()

    from dp_policy.checkpoint import create_untrained_checkpoint

    tmp = tempfile.mkdtemp(prefix='bench_policy_node_')
    one = create_untrained_checkpoint(Path(tmp) / 'one.ckpt', JOINTS, ['cam'], (96, 96),
                                      preset=args.preset)
    two = create_untrained_checkpoint(Path(tmp) / 'two.ckpt', JOINTS, ['cam0', 'cam1'], (96, 96),
                                      preset=args.preset)
    scenarios = [('1 camera 96x96', [('/camera/image_raw', 96, 96)], one),
                 ('2 cameras 640x480', [('/cam0/image_raw', 640, 480),
                                        ('/cam1/image_raw', 640, 480)], two)]
    keys = ['one96', 'two640']
    scenarios = [sc for k, sc in zip(keys, scenarios) if k in args.scenarios]
    rows = []
    for trig in args.trigger:
        args.trigger_now = trig
        for name, cams, ckpt in scenarios:
            print(f'... {name}, trigger {trig}', file=sys.stderr, flush=True)
            rows.append(run_scenario(name, cams, ckpt, args))
    shutil.rmtree(tmp, ignore_errors=True)

    print(f'\npolicy_node, {args.preset} model (random weights), backend {args.backend}, '
          f'num_threads {args.num_threads}, policy 10 Hz, joints 100 Hz, cameras '
          f'{args.camera_hz:g} Hz bgr8, {args.seconds:g} s per row, {os.cpu_count()} CPU cores')
    print('| inputs | trigger | chunks/s | stamp-to-trajectory p50 (ms) | p99 (ms) | '
          'inference p50 (ms) | policy_node CPU (cores) |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['scenario']} | {r['trigger']} | {r['rate_hz']:.1f} | {r['p50']:.1f} | "
              f"{r['p99']:.1f} | {r['inf50']:.1f} | {r['cpu']:.2f} |")
    print("target p50 < 40 ms: "
          + ', '.join(f"{r['scenario']}/{r['trigger']} {'met' if r['p50'] < 40 else 'MISSED'}"
                      for r in rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
