"""A separate OS process for the whole-graph test: echoes dp_msgs/ActionChunk and serves SetEnabled.

Subscribes to `chunks_in` (ActionChunk), republishes each chunk on `chunks_out` with the sequence
number doubled, and offers `set_enabled` (dp_msgs/srv/SetEnabled). Exits 0 on SIGINT/SIGTERM.
"""
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dp_msgs.msg import ActionChunk
from dp_msgs.srv import SetEnabled


class ChunkEcho(Node):
    def __init__(self):
        super().__init__('chunk_echo')
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.enabled = True
        self.pub = self.create_publisher(ActionChunk, 'chunks_out', qos)
        self.sub = self.create_subscription(ActionChunk, 'chunks_in', self.on_chunk, qos)
        self.srv = self.create_service(SetEnabled, 'set_enabled', self.on_set_enabled)
        print('chunk_echo ready', flush=True)

    def on_chunk(self, msg: ActionChunk):
        if not self.enabled:
            return
        msg.sequence = msg.sequence * 2
        self.pub.publish(msg)

    def on_set_enabled(self, request, response):
        self.enabled = request.enabled
        response.success = True
        response.message = f'enabled={self.enabled}'
        return response


def main():
    rclpy.init(args=sys.argv)
    node = ChunkEcho()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
