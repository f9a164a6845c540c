"""Whole-graph test of the foundation: dp_msgs over real DDS between two OS processes.

The test process and a child process (test/nodes/chunk_echo.py, started with the venv's python)
exchange dp_msgs/ActionChunk messages both ways and call a dp_msgs service across processes, on
the per-session ROS domain set by the root conftest.py (localhost discovery only).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

from builtin_interfaces.msg import Duration  # noqa: E402
from dp_msgs.msg import ActionChunk  # noqa: E402
from dp_msgs.srv import SetEnabled  # noqa: E402
from trajectory_msgs.msg import JointTrajectoryPoint  # noqa: E402

pytestmark = pytest.mark.graph
HERE = Path(__file__).resolve().parent


@pytest.fixture
def echo_process():
    proc = subprocess.Popen([sys.executable, str(HERE / 'nodes' / 'chunk_echo.py')],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    line = proc.stdout.readline()
    assert 'ready' in line, f'echo process did not start: {line!r}'
    yield proc
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail('echo process did not exit on SIGINT')
    assert rc == 0, f'echo process exited with {rc}: {proc.stdout.read()}'


def make_chunk(seq: int) -> ActionChunk:
    msg = ActionChunk()
    msg.header.stamp.sec = 100 + seq
    msg.header.frame_id = 'world'
    msg.sequence = seq
    msg.dt_s = 0.1
    msg.first_action_index = 1
    msg.n_action_steps = 8
    msg.num_samples = 4
    msg.chosen_sample = 3
    msg.trajectory.header = msg.header
    msg.trajectory.joint_names = ['joint1', 'joint2', 'joint3']
    for i in range(16):
        msg.trajectory.points.append(JointTrajectoryPoint(
            positions=[0.01 * i, -0.02 * i, 0.5], time_from_start=Duration(nanosec=i * 100_000_000)))
    return msg


def test_action_chunks_and_service_cross_processes(echo_process):
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node('graph_test', context=ctx)
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        received = []
        node.create_subscription(ActionChunk, 'chunks_out', received.append, qos)
        pub = node.create_publisher(ActionChunk, 'chunks_in', qos)

        deadline = time.monotonic() + 30.0
        while pub.get_subscription_count() == 0 or node.count_publishers('chunks_out') == 0:
            assert time.monotonic() < deadline, 'no discovery between the two processes in 30 s'
            executor.spin_once(timeout_sec=0.1)

        seq = 1
        while len(received) < 3 and time.monotonic() < deadline:
            pub.publish(make_chunk(seq))
            seq += 1
            executor.spin_once(timeout_sec=0.2)
        assert len(received) >= 3, 'no echoed ActionChunk came back'
        got = received[0]
        assert got.sequence % 2 == 0 and got.sequence > 0
        assert list(got.trajectory.joint_names) == ['joint1', 'joint2', 'joint3']
        assert len(got.trajectory.points) == 16
        assert got.trajectory.points[5].positions[1] == pytest.approx(-0.1)
        assert got.header.stamp.sec == 100 + got.sequence // 2
        assert got.chosen_sample == 3 and got.first_action_index == 1

        client = node.create_client(SetEnabled, 'set_enabled')
        assert client.wait_for_service(timeout_sec=30.0)
        future = client.call_async(SetEnabled.Request(enabled=False))
        executor.spin_until_future_complete(future, timeout_sec=30.0)
        assert future.result() is not None and future.result().success
        assert future.result().message == 'enabled=False'

        # Disabled: the echo must stop.
        time.sleep(0.3)
        for _ in range(10):
            executor.spin_once(timeout_sec=0.05)
        count = len(received)
        for i in range(5):
            pub.publish(make_chunk(1000 + i))
            executor.spin_once(timeout_sec=0.1)
        for _ in range(10):
            executor.spin_once(timeout_sec=0.05)
        assert len(received) == count, 'echo continued after SetEnabled(false)'
    finally:
        rclpy.try_shutdown(context=ctx)


def test_ros_domain_is_isolated():
    """The root conftest gives each test session its own domain, restricted to localhost."""
    assert os.environ['ROS_DOMAIN_ID'] == os.environ['DP_TEST_DOMAIN_ID']
    assert 1 <= int(os.environ['ROS_DOMAIN_ID']) <= 100
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
