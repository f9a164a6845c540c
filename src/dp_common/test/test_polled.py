"""dp_common.polled: a subscription no executor dispatches, drained by its owner."""
import time

import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import Int32  # noqa: E402

from dp_common.polled import PolledCallbackGroup, take_all  # noqa: E402


@pytest.fixture
def node():
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    n = rclpy.create_node('polled_test', context=ctx)
    yield n
    n.destroy_node()
    rclpy.try_shutdown(context=ctx)


def test_executor_never_dispatches_and_take_all_drains_in_order(node):
    called = []
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    sub = node.create_subscription(Int32, 'numbers', called.append, qos,
                                   callback_group=PolledCallbackGroup())
    seen = []   # a normal subscription on the same topic: proves the messages were delivered
    node.create_subscription(Int32, 'numbers', seen.append, 100)
    pub = node.create_publisher(Int32, 'numbers', 100)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    assert take_all(sub) == []
    for i in range(3):
        pub.publish(Int32(data=i))
    def spin_until_seen(n, what):
        end = time.monotonic() + 30.0
        while len(seen) < n:
            assert time.monotonic() < end, f'{what} never delivered'
            executor.spin_once(timeout_sec=0.05)

    spin_until_seen(3, 'messages')
    for _ in range(10):
        executor.spin_once(timeout_sec=0.01)
    assert called == []                                   # the executor left them alone
    assert [m.data for m in take_all(sub)] == [0, 1, 2]   # oldest first
    assert take_all(sub) == []
    # A flood between two drains: the history depth bounds what waits (the newest kept).
    for i in range(50):
        pub.publish(Int32(data=i))
    spin_until_seen(53, 'flood')
    assert [m.data for m in take_all(sub)] == [45, 46, 47, 48, 49]
    executor.shutdown()
    # A destroyed subscription drains to nothing instead of raising.
    node.destroy_subscription(sub)
    assert take_all(sub) == []

