"""Subscriptions that a node's own thread reads, without an executor wake-up per message.

rclpy's Python executor costs ~1 ms of CPU and a GIL hold per callback it dispatches: for a
100 Hz `/joint_states` stream that is ~10% of a core spent in the executor thread, and each GIL hold
delays a control thread that needs the interpreter at its deadline. A subscription created in a
`PolledCallbackGroup` is never put into an executor's wait set (its group never "can execute" a
subscription); the owner drains it with `take_all()` from the thread that needs the data (for the
follower: the control thread, at most 100 Hz), which costs a few microseconds when nothing arrived,
or hands it to a `SubscriptionThread`.

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

import threading
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


def take_all(sub, limit: int = 1000) -> List[Any]:
    """Every message waiting in `sub` (oldest first), without blocking; [] if none, or if the
    subscription has been destroyed. `limit` bounds one drain."""
    out = []
    try:
        with sub.handle:
            take = sub.handle.take_message
            for _ in range(limit):
                got = take(sub.msg_type, sub.raw)
                if got is None:
                    break
                out.append(got[0])
    except InvalidHandle:
        pass
    return out


class SubscriptionThread:
    """Runs the callbacks of some subscriptions on a thread of their own, without an executor.

    The subscriptions must be in a `PolledCallbackGroup` (so that no executor takes them too).
    The thread blocks in one rcl wait set over just these subscriptions (the GIL released), takes
    every waiting message and calls the subscription's callback with it, in arrival order per
    subscription. Per message that is a wake-up and a take (~50 us here) instead of a pass of
    rclpy's Python executor (~1 ms: it rebuilds its wait set over every entity of the node, the
    lifecycle and parameter services included, on each wake-up).

    Callbacks get the message only (never a MessageInfo). A callback that raises is counted
    (`errors`) and reported through `on_error(exc)`; the thread goes on. `stop()` before destroying the subscriptions (it joins the thread, which holds them).
    """

    def __init__(self, context, subscriptions, name: str = 'subscriptions', on_error=None,
                 poll_s: float = 0.1):
        from rclpy.guard_condition import GuardCondition
        self._context = context
        self._subs = list(subscriptions)
        self._guard = GuardCondition(None, None, context=context)
        self._stop = False
        self._poll_ns = int(poll_s * 1e9)
        self._on_error = on_error
        self.errors = 0
        self.messages = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> 'SubscriptionThread':
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop = True
        try:
            self._guard.trigger()
        except Exception:  # noqa: BLE001 - context already shut down: the poll timeout ends it
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._guard.destroy()

    def _run(self) -> None:
        from contextlib import ExitStack

        from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
        try:
            with ExitStack() as stack:
                for sub in self._subs:
                    stack.enter_context(sub.handle)
                stack.enter_context(self._guard.handle)
                stack.enter_context(self._context.handle)
                wait_set = _rclpy.WaitSet(len(self._subs), 1, 0, 0, 0, 0, self._context.handle)
                by_pointer = {sub.handle.pointer: sub for sub in self._subs}
                while not self._stop and self._context.ok():
                    wait_set.clear_entities()
                    for sub in self._subs:
                        wait_set.add_subscription(sub.handle)
                    wait_set.add_guard_condition(self._guard.handle)
                    wait_set.wait(self._poll_ns)
                    if self._stop:
                        break
                    for pointer in wait_set.get_ready_entities('subscription'):
                        sub = by_pointer.get(pointer)
                        if sub is not None:
                            self._dispatch(sub)
        except InvalidHandle:
            pass          # a subscription destroyed under us (teardown without stop())
        except Exception as exc:  # noqa: BLE001 - context shut down inside the wait
            if self._context.ok() and not self._stop:
                self._report(exc)

    def _dispatch(self, sub) -> None:
        take = sub.handle.take_message
        while not self._stop:
            got = take(sub.msg_type, sub.raw)
            if got is None:
                return
            self.messages += 1
            try:
                sub.callback(got[0])
            except Exception as exc:  # noqa: BLE001 - one bad callback must not stop the inputs
                self._report(exc)

    def _report(self, exc: Exception) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(exc)
