"""A synthetic sensor in its own OS process, for the policy_node graph test and benchmark.

    synthetic_sensor.py joints [rate_hz]                    /joint_states, joints in a scrambled order
                                                            plus an extra joint the policy does not use
    synthetic_sensor.py camera [rate_hz] [W] [H] [topic]    sensor_msgs/Image bgr8 (so the policy node
                                                            must convert), moving gradient

The camera's frames (a cycle of 16) are made once at start, like a driver handing over a filled
buffer: per frame only the stamp is written, so that the publisher's own numpy work (~5 ms per
640x480 frame) does not take the CPU the benchmark measures the policy node with.

Stamps are the node clock (wall time) rounded DOWN to a multiple of the period, so that a
receiver can tell which stream a stamp came from (camera stamps are multiples of 1/rate_hz).
Every published stamp is printed as 'stamp <ns>' when DP_SENSOR_PRINT_STAMPS=1. Prints 'ready'
once its publisher exists; exits 0 on SIGINT/SIGTERM. Sensor-data QoS, like real drivers.
"""
import os
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import qos_profile_sensor_data

from dp_common.images import numpy_to_image
from dp_common.stamps import ns_to_stamp
from sensor_msgs.msg import Image, JointState


def main() -> int:
    kind = sys.argv[1]
    rate_hz = float(sys.argv[2]) if len(sys.argv) > 2 else (100.0 if kind == 'joints' else 20.0)
    period_ns = int(round(1e9 / rate_hz))
    print_stamps = os.environ.get('DP_SENSOR_PRINT_STAMPS') == '1'
    rclpy.init(args=sys.argv)
    node = rclpy.create_node(f'synthetic_{kind}')
    if kind == 'joints':
        pub = node.create_publisher(JointState, '/joint_states', qos_profile_sensor_data)
    else:
        width = int(sys.argv[3]) if len(sys.argv) > 3 else 32
        height = int(sys.argv[4]) if len(sys.argv) > 4 else 32
        topic = sys.argv[5] if len(sys.argv) > 5 else '/camera/image_raw'
        pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
        base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        base = np.broadcast_to(base, (height, width, 3))
        frames = [numpy_to_image(((base + 4 * i) % 256).astype(np.uint8), 'bgr8')
                  for i in range(16)]
    print('ready', flush=True)
    k = 0
    try:
        while rclpy.ok():
            now = node.get_clock().now().nanoseconds
            stamp = now - now % period_ns
            if kind == 'joints':
                msg = JointState()
                msg.header.stamp = ns_to_stamp(stamp)
                t = stamp * 1e-9
                msg.name = ['joint3', 'gripper', 'joint1', 'joint2']
                msg.position = [0.3 * np.sin(t), 0.0, 0.1 * np.sin(t), 0.2 * np.cos(t)]
                pub.publish(msg)
            else:
                msg = frames[k % len(frames)]
                msg.header.stamp = ns_to_stamp(stamp)
                pub.publish(msg)
            if print_stamps:
                print(f'stamp {stamp}', flush=True)
            k += 1
            # sleep to the next period boundary of the clock
            now = node.get_clock().now().nanoseconds
            time.sleep(max(0.0, (stamp + period_ns - now) * 1e-9))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
