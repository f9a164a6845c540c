"""Subscriptions that a node's own thread reads, without an executor wake-up per message.

rclpy's Python executor costs ~1 ms of CPU and a GIL hold per callback it dispatches: for a
100 Hz `/joint_states` stream that is ~10% of a core spent in the executor thread, and each GIL hold
delays a control thread that needs the interpreter at its deadline. A subscription created in a
`PolledCallbackGroup` is never put into an executor's wait set (its group never "can execute" a
subscription); the owner drains it with `take_all()` from the thread that needs the data (for the
follower: the control thread, at most 100 Hz), which costs a few microseconds when nothing arrived.

The subscription's QoS event handlers (rclpy puts them in the subscription's group) are left out
too, so rclpy's default "incompatible QoS / type" warnings do not appear for these subscriptions
(the nodes' status shows a silent input as 0 Hz). Letting the executor run those handlers was tried
and measured: with the subscription itself out of the wait set, the executor thread then spun at
75% of a core (follower_node, 100 Hz joint states).

    group = PolledCallbackGroup()
    sub = node.create_subscription(JointState, 'joint_states', lambda _m: None,
                                   qos_profile_sensor_data, callback_group=group)
    for msg in take_all(sub):    # in the control thread
        ...

The subscription's callback is never called (rclpy requires one). Messages wait in the
subscription's history (its QoS depth) between two drains, so a drain sees at most `depth`
messages: a flood cannot grow a queue.

This module imports rclpy (the rest of dp_common does not).
"""
from __future__ import annotations

from typing import Any, List

from rclpy.callback_groups import CallbackGroup
from rclpy.exceptions import InvalidHandle


class PolledCallbackGroup(CallbackGroup):
    """A callback group whose entities no executor ever waits on or executes."""

    def can_execute(self, entity) -> bool:
        return False

    def beginning_execution(self, entity) -> bool:
        return False

    def ending_execution(self, entity) -> None:
        pass


def take_all(sub, limit: int = 1000, with_info: bool = False) -> List[Any]:
    """Every message waiting in `sub` (oldest first), without blocking; [] if none, or if the
    subscription has been destroyed. `limit` bounds one drain. With `with_info`, (message,
    MessageInfo) pairs: `received_timestamp` / `source_timestamp` in ns of the system clock,
    when it arrived here / was published (what the poll time cannot tell)."""
    out = []
    try:
        with sub.handle:
            take = sub.handle.take_message
            for _ in range(limit):
                got = take(sub.msg_type, sub.raw)
                if got is None:
                    break
                out.append(got if with_info else got[0])
    except InvalidHandle:
        pass
    return out

