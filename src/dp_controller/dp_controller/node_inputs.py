"""The inputs of follower_node's control thread: joint states, the robot's speed scaling, and
the output controller's state (ControllerActivity).

Joint states and speed scaling are taken by the control thread. Each keeps its newest valid value, when it was taken, and what it refused (by
reason, for FollowerStatus); a refused message is logged through `warn(key, text)` (the node's
rate-limited warning) and the last valid value stays in use. No node, no subscriptions: the node
takes the messages (dp_common.polled.take_all) and hands them over.
"""
from __future__ import annotations

import math
import threading
from typing import Callable, Optional, Sequence

import numpy as np

from dp_common.joints import JointIndexer

Warn = Callable[..., None]   # warn(key, text[, interval_s])


class JointStateInput:
    def __init__(self, joint_names: Sequence[str], warn: Warn, lock: threading.Lock,
                 rejected: Optional[dict] = None) -> None:
        """lock: the node's lock, under which the status reads `rejected` (counts by reason:
        'missing_joint', 'non_finite', ...; a dict the caller may keep across configurations)."""
        self.indexer = JointIndexer(joint_names)
        self._warn = warn
        self._lock = lock
        self.rejected: dict[str, int] = {} if rejected is None else rejected
        self.reset()

    def reset(self) -> None:
        """Nothing measured yet (an activation starts from a joint state taken after it)."""
        self.positions: Optional[np.ndarray] = None   # (J,) rad, configured order
        self.velocities: Optional[np.ndarray] = None  # where the message carries them
        self.taken_at = math.nan                       # node clock when it was taken

    def take(self, msgs, now: float) -> bool:
        """Validate `msgs` (sensor_msgs/JointState, oldest first); True when one was valid (the
        newest valid one is kept, taken at `now`)."""
        last = None
        for msg in msgs:
            if self.check(msg):
                last = msg
        if last is None:
            return False
        # Once per take, for the newest valid one: its velocities (used where a tracking fault
        # restarts the command) and when it was taken (joint_state_timeout_s).
        self.velocities, _ = self.indexer.velocities(last.name, last.velocity)
        self.taken_at = now
        return True

    def check(self, msg) -> bool:
        """Keep the message's positions if valid; else count and log why (False)."""
        q, reason = self.indexer.from_joint_state(msg)
        if q is None:
            # 'missing_joint:elbow' -> counter 'missing_joint'; the log names the joints.
            key = reason.split(':', 1)[0]
            with self._lock:
                count = self.rejected[key] = self.rejected.get(key, 0) + 1
            self._warn('joint_states/' + key, f'joint state ignored: {reason} ({count} so far); '
                       'the last valid one stays in use')
            return False
        self.positions = q
        return True


class SpeedScalingInput:
    """The robot's speed scaling in percent (std_msgs/Float64, as UR's
    speed_scaling_state_broadcaster publishes it)."""

    def __init__(self, topic: str, warn: Warn) -> None:
        self.topic = topic
        self._warn = warn
        self.rejected = 0
        self.reset()

    def reset(self) -> None:
        """An activation: the topic must be heard again before its silence counts."""
        self.heard_at = math.nan        # node clock of the last valid value
        self._activated_at = math.nan   # set by the first silence check after activation

    def take(self, msgs, now: float, in_use: float) -> Optional[float]:
        """The newest valid factor (0..1) among `msgs` (oldest first), or None. `in_use`: the
        factor in use, named in the log of a refused value."""
        for msg in reversed(msgs):
            percent = msg.data
            if math.isfinite(percent) and 0.0 <= percent <= 100.0 + 1e-6:
                self.heard_at = now
                return percent / 100.0
            self.rejected += 1
            self._warn('speed_scaling', f'speed scaling ignored: {percent!r} % (not in 0..100; '
                       f'{self.rejected} so far); the last valid one ({100.0 * in_use:g} %) '
                       'stays in use')
        return None

    def age(self, now: float) -> float:
        """Seconds since the last valid value; NaN if none since activation."""
        return now - self.heard_at if math.isfinite(self.heard_at) else math.nan

    def warn_if_never_heard(self, now: float, commanding: bool, timeout_s: float) -> None:
        """Never heard since activation while commanding for max(2 s, timeout_s): a warning
        (commands at 100 %; a robot that runs slower leaves the arm behind, which the tracking
        supervision catches). Its silence after it has spoken is the node's to supervise."""
        if not math.isfinite(self._activated_at):
            self._activated_at = now
        elif commanding and now - self._activated_at > max(2.0, timeout_s):
            self._warn('speed_scaling/none', f'no speed scaling on {self.topic} since '
                       'activation: commanding at 100 %', 10.0)


class ControllerActivity:
    """The output controller's lifecycle state, from the controller manager's activity topic
    (controller_manager_msgs/ControllerManagerActivity, Jazzy and newer): 'unknown' until a
    message names it (commands are sent), else its label ('active', 'inactive', ...), or
    'not_loaded' when a message does not name it."""

    def __init__(self, controller: str) -> None:
        self.name = controller.rstrip('/').split('/')[-1]   # the manager's names: no namespace
        self.state = 'unknown'
        self.deactivations = 0     # times it stopped being active while the follower commanded

    @property
    def commanding(self) -> bool:
        return self.state in ('active', 'unknown')

    def update(self, msg) -> str:
        """Take a ControllerManagerActivity message; returns the previous state."""
        previous, state = self.state, 'not_loaded'
        for named in msg.controllers:
            if named.name == self.name:
                state = named.state.label or f'state_{named.state.id}'
        self.state = state      # one assignment: the control thread reads it without the lock
        return previous
