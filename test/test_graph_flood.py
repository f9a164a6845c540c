"""Every node survives messages that arrive at any point of its life (issue 17): before and while
it configures, while active, inactive (lifecycle nodes: deactivate, cleanup, configure and activate
again under the flood), and while it shuts down.

Each node runs as its own process (as `ros2 launch` / dp_launch start it). A flooder in this test
publishes on every input of the node, from before the process starts until after it exited: valid
messages, and malformed ones (wrong sizes, NaN, unknown joints, empty), about 300 per second in
all. The node must start, go through its transitions, stop on SIGINT with exit code 0, and log no
traceback.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.graph, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
JOINTS = ['joint1', 'joint2', 'joint3']
SPEED_SCALING = '/speed_scaling_state_broadcaster/speed_scaling'   # the follower reads it here


def _messages():
    """(topic, type, [messages]) for every input of the project's nodes: good and bad ones."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64, Float64MultiArray, Header
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dp_common.trajectories import arrays_to_joint_trajectory
    from dp_msgs.msg import TaskStatus

    def stamp():
        t = time.time()
        return Time(sec=int(t), nanosec=int((t % 1) * 1e9))

    good_traj = lambda: arrays_to_joint_trajectory(   # noqa: E731
        JOINTS, np.arange(8) * 0.1, np.zeros((8, 3)) + [-0.9, 2.5, -1.6], stamp=time.time())
    nan_traj = lambda: arrays_to_joint_trajectory(    # noqa: E731
        JOINTS, np.arange(3) * 0.1, np.full((3, 3), math.nan), stamp=time.time())
    moving_end = lambda: arrays_to_joint_trajectory(  # noqa: E731
        JOINTS, [0.1], [[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]], stamp=0.0)
    odd_traj = lambda: JointTrajectory(               # noqa: E731
        joint_names=['joint1', 'elbow'], points=[JointTrajectoryPoint(positions=[1.0])])
    img = lambda w, h: Image(header=Header(stamp=stamp()), height=h, width=w,  # noqa: E731
                             encoding='rgb8', step=3 * w, data=bytes(3 * w * h))
    bad_img = lambda: Image(header=Header(stamp=stamp()), height=96, width=96,  # noqa: E731
                            encoding='rgb8', step=288, data=bytes(10))
    return [
        ('/policy_node/trajectory', JointTrajectory, [good_traj, nan_traj, odd_traj,
                                                      JointTrajectory]),
        ('/trajectory', JointTrajectory, [good_traj, nan_traj, odd_traj]),
        ('/joint_trajectory_controller/joint_trajectory', JointTrajectory,
         [good_traj, nan_traj, moving_end, odd_traj, JointTrajectory]),
        ('/joint_states', JointState, [
            lambda: JointState(header=Header(stamp=stamp()), name=JOINTS,
                               position=[-0.9, 2.5, -1.6], velocity=[0.0] * 3),
            lambda: JointState(header=Header(stamp=stamp()), name=JOINTS, position=[math.nan] * 3),
            lambda: JointState(header=Header(stamp=stamp()), name=['joint1'], position=[1.0, 2.0]),
            JointState]),
        ('/forward_position_controller/commands', Float64MultiArray, [
            lambda: Float64MultiArray(data=[-0.9, 2.5, -1.6]),
            lambda: Float64MultiArray(data=[math.nan, 0.0]), Float64MultiArray]),
        ('/camera/image_raw', Image, [lambda: img(96, 96), lambda: img(7, 5), bad_img]),
        ('/task_status', TaskStatus, [TaskStatus]),
        (SPEED_SCALING, Float64, [lambda: Float64(data=50.0), lambda: Float64(data=math.nan),
                                  lambda: Float64(data=-1.0), lambda: Float64(data=1e9)]),
    ]


class Flooder:
    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_srvs.srv import Trigger  # noqa: F401
        self.rclpy = rclpy
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node('flooder', context=self.ctx)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = [(self.node.create_publisher(t, topic, qos), makers)
                     for topic, t, makers in _messages()]
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._flood, daemon=True),
                        threading.Thread(target=self._spin, daemon=True)]
        for t in self.threads:
            t.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:   # noqa: BLE001 - context shut down
            pass

    def _flood(self):
        k = 0
        while not self._stop.is_set():
            for pub, makers in self.pubs:
                pub.publish(makers[k % len(makers)]())
                self.sent += 1
            k += 1
            time.sleep(0.02)

    def transition(self, node_name: str, transition_id: int, timeout_s=60.0) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        client = self.node.create_client(ChangeState, f'/{node_name}/change_state')
        assert client.wait_for_service(timeout_sec=timeout_s), f'{node_name}/change_state'
        fut = client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        end = time.monotonic() + timeout_s
        while not fut.done():
            assert time.monotonic() < end, f'{node_name} transition {transition_id} timed out'
            time.sleep(0.05)
        self.node.destroy_client(client)
        return fut.result().success

    def close(self):
        self._stop.set()
        self.threads[0].join(5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)


def _spec(name, tmp_path, embedded_arm_ckpt):
    from dp_bringup.starter import NodeSpec
    cfg = ROOT / 'config'
    robot = str(cfg / 'robots' / 'embedded_arm.yaml')
    if name == 'follower_node':
        return NodeSpec('dp_controller', 'follower_node', 'follower_node',
                        params_files=[str(cfg / 'follower.yaml'), robot],
                        parameters={'speed_scaling_topic': SPEED_SCALING},
                        remappings=[('trajectory', '/policy_node/trajectory')])
    if name == 'policy_node':
        return NodeSpec('dp_policy_node', 'policy_node', 'policy_node',
                        params_files=[str(cfg / 'policy_node.yaml'), robot],
                        parameters={'checkpoint': embedded_arm_ckpt, 'backend': 'torch', 'warmup': False})
    if name == 'sim_node':
        return NodeSpec('dp_sim', 'sim_node', 'sim_node', params_files=[str(cfg / 'sim.yaml')],
                        parameters={'publish_clock': False})
    if name == 'demonstrator_node':
        return NodeSpec('dp_sim', 'demonstrator_node', 'demonstrator_node')
    if name == 'recorder_node':
        return NodeSpec('dp_sim', 'recorder_node', 'recorder_node',
                        parameters={'output_dir': str(tmp_path / 'bags')})
    raise KeyError(name)


LIFECYCLE = {'follower_node', 'policy_node'}


@pytest.mark.parametrize('name', ['follower_node', 'policy_node', 'sim_node', 'demonstrator_node',
                                  'recorder_node'])
def test_node_survives_a_flood_through_its_whole_life(tmp_path, embedded_arm_ckpt, name):
    from lifecycle_msgs.msg import Transition

    from dp_bringup.starter import ProcessGroup
    flooder = Flooder()
    group = ProcessGroup([_spec(name, tmp_path, embedded_arm_ckpt)], log_dir=str(tmp_path / 'logs'),
                         quiet=True)
    try:
        time.sleep(1.0)                       # messages already flowing before the start
        group.start()
        time.sleep(4.0)                       # start-up and configure under the flood
        assert not group.dead_required(), (tmp_path / 'logs' / f'{name}.log').read_text()[-3000:]
        if name in LIFECYCLE:
            for tid in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                        Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE,
                        Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE):
                assert flooder.transition(name, tid), (name, tid)
                time.sleep(0.5)
        time.sleep(1.0)
        assert not group.dead_required()
        codes = group.stop()                  # SIGINT while the flood goes on
        time.sleep(0.5)
    finally:
        group.stop()
        sent = flooder.sent
        flooder.close()
    log = (tmp_path / 'logs' / f'{name}.log').read_text()
    assert sent > 300
    assert codes == {name: 0}, log[-3000:]
    assert 'Traceback' not in log, log[-6000:]
