"""Multi-process test of follower_node over real DDS: chunks from another OS process, the command
stream recorded here and checked for continuity and limits; then the chunk publisher is killed
(SIGKILL) and the follower must trip its watchdog and hold.

Processes: follower_node (python -m dp_controller.follower_node) and test/nodes/chunk_publisher.py
(fake policy + perfect position-controlled robot echoing the commands as joint states, with a
malformed chunk every few chunks). Both run on the per-session ROS domain of the root conftest.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from dp_msgs.msg import FollowerStatus  # noqa: E402

pytestmark = pytest.mark.graph
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RATE_HZ = 500.0
WATCHDOG_S = 1.0   # generous: chunks may come late on a loaded machine
LIMIT_RAD = 1.2
VMAX = 2.0
TIMEOUT_S = 60.0


def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ), start_new_session=True)


def stop(proc, sig=signal.SIGINT):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture
def follower_process(tmp_path):
    params = tmp_path / 'follower_test.yaml'
    params.write_text(f"""follower_node:
  ros__parameters:
    joint_names: [joint1, joint2, joint3]
    control_rate_hz: {RATE_HZ}
    position_lower_rad: [{-LIMIT_RAD}]
    position_upper_rad: [{LIMIT_RAD}]
    max_velocity_rad_s: [{VMAX}]
    max_acceleration_rad_s2: [10.0]
    watchdog_timeout_s: {WATCHDOG_S}
    execution_mode: receding_horizon
    n_action_steps: 2
    status_rate_hz: 20.0
""")
    proc = start([sys.executable, '-m', 'dp_controller.follower_node', '--ros-args',
                  '--params-file', str(ROOT / 'config' / 'follower.yaml'),
                  '--params-file', str(params)])
    yield proc
    rc = stop(proc)
    out = proc.stdout.read()
    assert rc == 0, f'follower_node exited with {rc}:\n{out}'
    assert 'Traceback' not in out, out


def test_chunks_from_another_process_then_publisher_killed(follower_process, ros_node):
    publisher = start([sys.executable, str(HERE / 'nodes' / 'chunk_publisher.py'),
                       '--rate-hz', '10', '--bad-every', '3'])
    try:
        assert 'ready' in publisher.stdout.readline()
        node = ros_node.node
        commands, statuses = [], []
        node.create_subscription(
            Float64MultiArray, 'forward_position_controller/commands',
            lambda m: commands.append((time.monotonic(), np.array(m.data))),
            QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(
            FollowerStatus, 'follower_node/status', lambda m: statuses.append((time.monotonic(), m)),
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))

        def spin_until(predicate, what):
            ros_node.spin_until(predicate, what, TIMEOUT_S)

        def label():
            return statuses[-1][1].state_label if statuses else None

        spin_until(lambda: label() == 'following', 'following')
        t_follow = time.monotonic()
        spin_until(lambda: time.monotonic() > t_follow + 3.0, '3 s of following')
        assert label() == 'following'
        st = statuses[-1][1]
        rejected = {c.name: c.count for c in st.rejected}
        # chunk_publisher's malformed kinds, every third chunk (and chunks that came before the
        # first joint state: not_started)
        assert set(rejected) <= {'non_finite', 'non_monotonic_time', 'missing_joint',
                                 'stamp_too_old', 'position_limit', 'not_started'}
        rejected.pop('not_started', None)
        assert sum(rejected.values()) >= 3 and st.chunks_accepted >= 10

        spin_until(lambda: label() == 'following', 'following before the kill')
        trips_before = statuses[-1][1].watchdog_trips
        publisher.kill()
        publisher.wait()
        n_kill = len(commands)
        spin_until(lambda: label() == 'holding', 'holding after the publisher was killed')
        # The killed process was the policy and the robot: the follower holds because its joint
        # states stopped (tracking_timeout_s) or, if that came later, the chunks (watchdog).
        last = statuses[-1][1]
        assert (last.hold_reason == 'joint_states_stale' and last.tracking_faults == 1) or \
            last.watchdog_trips >= trips_before + 1, last
        # The watchdog trips within its timeout plus one period on the follower's own clock:
        # a status reporting "following" never comes more than that after the last chunk.
        since_following = [m.time_since_last_chunk_s for _, m in statuses
                           if m.state_label == 'following']
        assert max(since_following) <= WATCHDOG_S + 1.0 / RATE_HZ + 1e-9
        # Braked to a standstill within the limits, then held (braking takes vmax/amax of control
        # periods; longer in wall time only if the loaded machine starves the control thread).
        def standstill():
            last = np.array([q for _, q in commands[-20:]])
            return len(last) == 20 and np.all(last == last[0])
        spin_until(standstill, 'a standstill after the watchdog trip')
        n = len(commands)
        spin_until(lambda: len(commands) > n + 20, 'commands while holding')
        held = np.array([q for _, q in commands[n - 1:]])
        assert np.all(held == held[0])
        assert len(commands) > n_kill

        qs = np.array([q for _, q in commands])
        assert np.all(np.abs(qs) <= LIMIT_RAD + 1e-9)
        steps = np.abs(np.diff(qs, axis=0))
        # At most 50 lost commands between two received ones on a loaded machine.
        assert np.all(steps <= VMAX * 50 / RATE_HZ + 1e-9), f'jump of {steps.max():.4f} rad'
        # And it moved: the wave was followed, not just held.
        assert np.ptp(qs[:, 0]) > 0.1
    finally:
        stop(publisher, signal.SIGKILL)
