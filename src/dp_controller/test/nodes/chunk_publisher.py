"""A separate OS process for the follower's multi-process test: a fake policy and a fake robot.

Publishes trajectory_msgs/JointTrajectory chunks on `trajectory` (reliable, depth 1) at
--rate-hz, each stamped `--latency-s` in the past (its "observation time") with --points points
--dt-s apart along slow sinusoids, and sensor_msgs/JointState on `joint_states` at 100 Hz
(echoing the follower's latest command, i.e. a perfect position-controlled robot). Every
--bad-every-th chunk is malformed in a rotating way (NaN, non-monotonic time, missing joint,
old stamp, out of limits), which the follower must reject without any jump in its commands.
Prints "ready" once started; exits 0 on SIGINT/SIGTERM (the test kills it with SIGKILL).
"""
import argparse
import math
import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from dp_common.trajectories import arrays_to_joint_trajectory

JOINTS = ['joint1', 'joint2', 'joint3']


def wave(t):
    """Reference joint positions (rad) at times t (N,) -> (N, 3)."""
    t = np.asarray(t)[:, None]
    return np.concatenate([0.6 * np.sin(1.5 * t), 0.4 * np.cos(1.1 * t) - 0.4,
                           0.3 * np.sin(2.3 * t + 0.5)], axis=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rate-hz', type=float, default=10.0)
    ap.add_argument('--points', type=int, default=16)
    ap.add_argument('--dt-s', type=float, default=0.1)
    ap.add_argument('--latency-s', type=float, default=0.04)
    ap.add_argument('--bad-every', type=int, default=0)
    ap.add_argument('--controller', default='forward_position_controller')
    args, ros_args = ap.parse_known_args()
    rclpy.init(args=[sys.argv[0]] + ros_args)
    node = rclpy.create_node('fake_policy_and_robot')
    pub = node.create_publisher(JointTrajectory, 'trajectory',
                                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    js_pub = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
    state = {'q': [0.0, 0.0, 0.0], 'n': 0}

    def on_cmd(msg):
        state['q'] = list(msg.data)

    node.create_subscription(Float64MultiArray, f'{args.controller}/commands', on_cmd, 10)

    def publish_js():
        js = JointState(name=JOINTS, position=[float(x) for x in state['q']])
        js.header.stamp = node.get_clock().now().to_msg()
        js_pub.publish(js)

    def publish_chunk():
        state['n'] += 1
        now = node.get_clock().now().nanoseconds * 1e-9
        stamp = now - args.latency_s
        t = np.arange(args.points) * args.dt_s
        pos = wave(stamp + t)
        names = list(JOINTS)
        bad = args.bad_every and state['n'] % args.bad_every == 0
        kind = (state['n'] // max(args.bad_every, 1)) % 5 if bad else -1
        if kind == 0:
            pos[3, 1] = math.nan
        elif kind == 1:
            t[5] = t[4]
        elif kind == 2:
            names, pos = names[:2], pos[:, :2]
        elif kind == 3:
            stamp -= 10.0
        elif kind == 4:
            pos[2, 0] = 50.0
        pub.publish(arrays_to_joint_trajectory(names, t, pos, stamp=stamp))

    node.create_timer(0.01, publish_js)
    node.create_timer(1.0 / args.rate_hz, publish_chunk)
    print('ready', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
