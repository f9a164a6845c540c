"""policy_node in a multi-process graph: synthetic joint-state and camera publishers in two other
OS processes, policy_node started through its console script (what `ros2 run` executes), and this
test process in the follower's place, all talking over DDS on loopback.

Checks what a follower relies on: trajectories arrive on /policy_node/trajectory with the
checkpoint's joint names, header stamps that are observation stamps (the camera's: multiples of
its period, never an arrival time), points at i*dt, and PolicyStatus latched on /policy_node/status.
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy)  # noqa: E402

from dp_common.stamps import stamp_to_ns  # noqa: E402
from dp_common.stamps import stamp_to_sec  # noqa: E402
from dp_msgs.msg import PolicyStatus  # noqa: E402
from dp_msgs.srv import SetEnabled  # noqa: E402
from dp_policy.checkpoint import create_untrained_checkpoint  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

pytestmark = pytest.mark.graph
HERE = Path(__file__).resolve().parent
JOINTS = ['joint1', 'joint2', 'joint3']
CAMERA_HZ = 20.0
CAMERA_PERIOD_NS = 50_000_000
JOINT_PERIOD_NS = 10_000_000


def policy_node_command() -> list[str]:
    exe = shutil.which('policy_node')
    prefix = os.environ.get('COLCON_PREFIX_PATH', '').split(os.pathsep)[0]
    installed = Path(prefix) / 'dp_policy_node' / 'lib' / 'dp_policy_node' / 'policy_node' \
        if prefix else None
    if installed is not None and installed.exists():
        return [sys.executable, str(installed)]
    if exe:
        return [sys.executable, exe]
    return [sys.executable, '-m', 'dp_policy_node.policy_node']


class Proc:
    def __init__(self, args, ready='ready'):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=dict(os.environ))
        if ready:
            line = self.p.stdout.readline()
            assert ready in line, f'{args[1]} did not start: {line!r}'

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None, 'did not exit on SIGINT'
        return rc, self.p.stdout.read()


@pytest.fixture
def graph(tmp_path):
    ckpt = create_untrained_checkpoint(tmp_path / 'g.ckpt', JOINTS, ['cam'], (32, 32),
                                       preset='tiny', dt_s=0.1)
    procs = [
        Proc([sys.executable, str(HERE / 'nodes' / 'synthetic_sensor.py'), 'joints', '100']),
        Proc([sys.executable, str(HERE / 'nodes' / 'synthetic_sensor.py'), 'camera',
              str(CAMERA_HZ), '48', '40']),        # 48x40 bgr8: converted and resized to 32x32
    ]
    policy = Proc(policy_node_command() + [
        '--ros-args', '--params-file', str(HERE.parents[2] / 'config' / 'policy_node.yaml'),
        '--params-file', str(HERE.parents[2] / 'config' / 'robots' / 'embedded_arm.yaml'),
        '-p', f'checkpoint:={ckpt}', '-p', 'backend:=torch', '-p', 'warmup:=false'], ready=None)
    yield policy
    results = [p.stop() for p in procs + [policy]]
    for rc, out in results:
        assert rc == 0, f'a graph process exited with {rc}: {out[-2000:]}'


def test_trajectories_across_processes(graph, ros_node):
    node, executor = ros_node.node, ros_node.executor
    got: list[JointTrajectory] = []
    arrival: list[int] = []

    def on_traj(msg):
        got.append(msg)
        arrival.append(node.get_clock().now().nanoseconds)
    # the follower's subscription: reliable, depth 1
    node.create_subscription(JointTrajectory, '/policy_node/trajectory', on_traj,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    status: list[PolicyStatus] = []
    node.create_subscription(PolicyStatus, '/policy_node/status', status.append,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    def ten_or_died():
        assert graph.p.poll() is None, f'policy_node died: {graph.p.stdout.read()[-3000:]}'
        return len(got) >= 10
    # discovery + torch import on a loaded machine
    ros_node.spin_until(ten_or_died, f'10 trajectories (status {status[-1:]})', 120.0)

    for msg, t_arrival in zip(got, arrival):
        assert list(msg.joint_names) == JOINTS
        assert len(msg.points) == 15
        for i, p in enumerate(msg.points):
            assert stamp_to_sec(p.time_from_start) == pytest.approx(0.1 * i, abs=1e-9)
            assert np.all(np.isfinite(p.positions)) and len(p.positions) == 3
        stamp = stamp_to_ns(msg.header.stamp)
        # an observation stamp: the camera lags the 100 Hz joints, so it is a camera stamp
        assert stamp % CAMERA_PERIOD_NS == 0 or stamp % JOINT_PERIOD_NS == 0, stamp
        assert 0 < t_arrival - stamp < 2_000_000_000          # from the recent past
    stamps = [stamp_to_ns(m.header.stamp) for m in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert sum(s % CAMERA_PERIOD_NS == 0 for s in stamps) >= len(stamps) // 2
    gaps = np.diff(stamps) * 1e-9
    assert 0.05 <= np.median(gaps) <= 0.2, gaps            # ~10 Hz policy rate

    ros_node.spin_until(lambda: status and status[-1].chunks_published > 0,   # latched, 1 Hz
                        'a status counting chunks', 10.0)
    assert status[-1].lifecycle_state == 'active'
    topics = {i.topic for i in status[-1].inputs}
    assert topics == {'/joint_states', '/camera/image_raw'}

    # a service across processes: disable output, the trajectories stop
    client = node.create_client(SetEnabled, '/policy_node/set_enabled')
    assert client.wait_for_service(timeout_sec=30.0)
    future = client.call_async(SetEnabled.Request(enabled=False))
    executor.spin_until_future_complete(future, timeout_sec=30.0)
    assert future.result().success
    ros_node.spin_for(1.0)
    n = len(got)
    ros_node.spin_for(1.5)
    assert len(got) == n
