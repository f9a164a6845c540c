"""Whole-graph tests: sim_node, demonstrator and recorder as separate OS processes over DDS.

1. sim_node alone, driven by this test process through the ros2_control topic interfaces
   (joint trajectory, forward commands, a rejected command) and the reset service.
2. dp_record_demos (sim_node + demonstrator_node + recorder_node) for two short episodes: the
   bags are readable by rosbags, hold the expected topics with increasing header stamps, and end
   with a successful, done task status.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from dp_msgs.msg import Counter, TaskStatus  # noqa: E402
from dp_msgs.srv import ResetEpisode  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from std_msgs.msg import Float64, Float64MultiArray  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from dp_common.trajectories import arrays_to_joint_trajectory  # noqa: E402

pytestmark = pytest.mark.graph
SPEED_SCALING = '/speed_scaling_state_broadcaster/speed_scaling'


@pytest.fixture
def sim_process():
    env = dict(os.environ, MUJOCO_GL=os.environ.get('MUJOCO_GL', 'egl'))
    proc = subprocess.Popen([sys.executable, '-m', 'dp_sim.sim_node', '--ros-args',
                             '-p', 'publish_clock:=false', '-p', 'seed:=3',
                             '-p', f'speed_scaling_topic:={SPEED_SCALING}',
                             '-p', 'second_post_xy_m:=[0.40, -0.09]'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    yield proc
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail('sim_node did not exit on SIGINT')
    out = proc.stdout.read()
    assert rc == 0, f'sim_node exited with {rc}:\n{out}'


def test_sim_node_speaks_the_ros2_control_interfaces(sim_process, ros_node):
    node = ros_node.node
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    states, images, statuses, rejected = [], [], [], []
    node.create_subscription(JointState, 'joint_states', states.append, reliable)
    node.create_subscription(Image, 'camera/image_raw', images.append, reliable)
    node.create_subscription(TaskStatus, 'task_status', statuses.append, latched)
    node.create_subscription(Counter, '/sim_node/rejected_commands', rejected.append, latched)
    scalings, obstacles = [], []
    node.create_subscription(Float64, SPEED_SCALING, scalings.append, reliable)
    node.create_subscription(MarkerArray, 'obstacles', obstacles.append, latched)
    params = node.create_client(SetParameters, '/sim_node/set_parameters')
    traj_pub = node.create_publisher(
        __import__('trajectory_msgs.msg', fromlist=['JointTrajectory']).JointTrajectory,
        'joint_trajectory_controller/joint_trajectory', reliable)
    fwd_pub = node.create_publisher(Float64MultiArray, 'forward_position_controller/commands',
                                    reliable)
    client = node.create_client(ResetEpisode, '/sim_node/reset_episode')

    def spin_until(pred, timeout):
        ros_node.spin_until(pred, 'the condition of this step', timeout)

    spin_until(lambda: client.service_is_ready() and states and images
               and traj_pub.get_subscription_count() > 0
               and fwd_pub.get_subscription_count() > 0, 180.0)  # slow start on a busy machine
    fut = client.call_async(ResetEpisode.Request(seed=42))
    spin_until(fut.done, 60.0)
    res = fut.result()
    assert res.success and res.episode == 1
    assert 0.39 <= res.target.x <= 0.44 and -0.10 <= res.target.y <= 0.10

    # the posts (the task option's second one too), latched, as RViz draws cylinders
    spin_until(lambda: obstacles, 30.0)
    posts = [(m.ns, m.type, m.header.frame_id, round(m.pose.position.x, 6),
              round(m.pose.position.y, 6), round(m.scale.x, 6), round(m.scale.z, 6))
             for m in obstacles[-1].markers]
    assert posts == [('post', Marker.CYLINDER, 'world', 0.31, 0.0, 0.05, 0.06),
                     ('post2', Marker.CYLINDER, 'world', 0.40, -0.09, 0.05, 0.06)]

    js = states[-1]
    assert list(js.name) == ['joint1', 'joint2', 'joint3']
    assert len(js.position) == len(js.velocity) == len(js.effort) == 3
    img = images[-1]
    assert (img.height, img.width, img.encoding, img.step) == (96, 96, 'rgb8', 288)
    # Stamps: wall clock (publish_clock false) and increasing.
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in states]
    assert np.all(np.diff(stamps) > 0) and abs(stamps[-1] - time.time()) < 2.0

    # Joint trajectory, stamp 0 = start now, goal in 1 s: reached and held.
    goal = [-0.3, 1.2, -0.7]
    traj_pub.publish(arrays_to_joint_trajectory(
        ['joint3', 'joint1', 'joint2'], [0.5, 1.0],
        [[-1.0, -0.6, 1.8], [goal[2], goal[0], goal[1]]]))
    # (reached within 1 s of simulated time; waited for in wall time, the machine may be busy)
    spin_until(lambda: np.allclose(states[-1].position, goal, atol=0.02), 60.0)

    # Forward command: tracked.
    fwd_pub.publish(Float64MultiArray(data=[-0.5, 1.5, -0.9]))
    spin_until(lambda: np.allclose(states[-1].position, [-0.5, 1.5, -0.9], atol=0.02), 60.0)

    # Wrong length and NaN: rejected and counted, the arm holds its position.
    fwd_pub.publish(Float64MultiArray(data=[0.0, 0.0]))
    fwd_pub.publish(Float64MultiArray(data=[0.0, float('nan'), 0.0]))
    spin_until(lambda: rejected and rejected[-1].count >= 2, 60.0)
    t0 = time.monotonic()
    spin_until(lambda: time.monotonic() - t0 > 0.5, 10.0)
    assert np.allclose(states[-1].position, [-0.5, 1.5, -0.9], atol=0.02)
    assert statuses and statuses[-1].episode == 1

    # Speed scaling (a UR's slider, set at run time): published in percent where UR's
    # speed_scaling_state_broadcaster does; at 0 the trajectory controller's time stands
    # still, back at 100 the trajectory runs; values outside 0..100 are refused.
    def set_scaling(percent):
        fut = params.call_async(SetParameters.Request(parameters=[Parameter(
            name='speed_scaling_percent', value=ParameterValue(
                type=ParameterType.PARAMETER_DOUBLE, double_value=percent))]))
        spin_until(fut.done, 30.0)
        return fut.result().results[0].successful

    assert scalings and scalings[-1].data == 100.0
    assert set_scaling(0.0) and not set_scaling(150.0)
    spin_until(lambda: scalings[-1].data == 0.0, 30.0)
    traj_pub.publish(arrays_to_joint_trajectory(['joint1', 'joint2', 'joint3'], [0.5],
                                                [goal]))
    t0 = time.monotonic()
    spin_until(lambda: time.monotonic() - t0 > 0.5, 10.0)
    assert np.allclose(states[-1].position, [-0.5, 1.5, -0.9], atol=0.02)
    assert set_scaling(100.0)
    spin_until(lambda: np.allclose(states[-1].position, goal, atol=0.02), 60.0)


def test_record_demos_writes_readable_episode_bags(tmp_path):
    """sim_node + demonstrator_node + recorder_node as processes, 2 episodes at 4x real time."""
    from rosbags.rosbag2 import Reader
    from dp_common.bags import typestore
    from dp_policy.data.dataset import DatasetConfig, load_episodes

    out = tmp_path / 'demos'
    proc = subprocess.run(
        [sys.executable, '-m', 'dp_sim.record_demos', '--out', str(out), '--episodes', '2',
         '--seed', '5', '--real-time-factor', '4', '--domain-id', os.environ['ROS_DOMAIN_ID']],
        capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(next(x for x in proc.stdout.splitlines()
                              if x.startswith('SUMMARY ')).split(' ', 1)[1])
    assert summary['successful'] == 2
    assert summary['left'] == summary['right'] == 1  # sides come in shuffled pairs
    bags = sorted(out.glob('episode_*'))
    assert len(bags) == 2
    store = typestore()
    expected = {'/camera/image_raw': 'sensor_msgs/msg/Image',
                '/joint_states': 'sensor_msgs/msg/JointState',
                '/forward_position_controller/commands': 'std_msgs/msg/Float64MultiArray',
                '/task_status': 'dp_msgs/msg/TaskStatus'}
    for bag in bags:
        with Reader(bag) as reader:
            assert {c.topic: c.msgtype for c in reader.connections} == expected
            counts = {c.topic: c.msgcount for c in reader.connections}
            n_status = counts['/task_status']                   # 20 Hz
            assert n_status >= 60                               # more than 3 s
            assert counts['/camera/image_raw'] >= n_status - 2  # 20 Hz, none lost
            assert counts['/joint_states'] >= 2.5 * n_status - 5  # 50 Hz, none lost
            assert counts['/forward_position_controller/commands'] >= 30
            last_stamp, last_log, last_status = {}, 0, None
            for conn, log_ns, raw in reader.messages():
                assert log_ns >= last_log
                last_log = log_ns
                msg = store.deserialize_cdr(raw, conn.msgtype)
                if conn.topic == '/forward_position_controller/commands':
                    assert len(msg.data) == 3 and np.all(np.isfinite(msg.data))
                    continue
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                assert stamp >= last_stamp.get(conn.topic, 0), conn.topic
                last_stamp[conn.topic] = stamp
                # Log time = publication time in simulated time = the header stamp here.
                assert abs(log_ns - stamp) < 0.03e9, (conn.topic, log_ns, stamp)
                if conn.topic == '/camera/image_raw':
                    assert (msg.height, msg.width, msg.encoding) == (96, 96, 'rgb8')
                if conn.topic == '/task_status':
                    last_status = msg
            assert last_status.done and last_status.success and not last_status.obstacle_contact
            assert last_status.side in ('left', 'right')

    # The policy's dataset reader turns them into episodes.
    cfg = DatasetConfig(joint_names=['joint1', 'joint2', 'joint3'],
                        cameras={'overhead': '/camera/image_raw'}, episode_topic='/task_status')
    episodes, meta = load_episodes(out, cfg, cache_dir=tmp_path / 'cache', progress=False)
    assert len(episodes) == 2 and meta.image_hw == (96, 96)
    for ep in episodes:
        assert len(ep.t) >= 30 and ep.images['overhead'].shape[1:] == (96, 96, 3)
        # The demonstrator ends at rest on the target: last command == last joint positions.
        assert np.allclose(ep.action[-1], ep.state[-1], atol=0.02)
