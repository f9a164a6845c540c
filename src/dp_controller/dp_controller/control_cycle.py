"""CommandCycle: what follower_node's control thread does every control period.

ControlLoop (control_loop.py) calls `tick(k, mono_now)` at control_rate_hz. Each tick, in this order:
1. while the follower is not started: take the joint states (it starts from the measured position
   once one is valid and the output controller is active);
2. under the node's lock: Follower.step (the command for now, catching up on skipped periods) and,
   for the joint_trajectory output when a rolling trajectory is due, Follower.preview;
3. publish the command (forward_command: every period; joint_trajectory: when due);
4. after the command is out, at most every `js_every` ticks (JOINT_STATE_POLL_HZ): take the joint
   states and the speed scaling (node_inputs), then supervise: tracking (Follower.supervise),
   silent joint states or speed scaling (Follower.supervise_stale); a trip is logged as an error.
While the output controller is not active (ControllerActivity) nothing is commanded; joint states
are still taken, so that the next command starts from the measured position.

The subscriptions' messages are taken here (dp_common.polled.take_all), not dispatched by the
executor. A take or publish that fails because the context went first (shutdown) ends quietly.
"""
from __future__ import annotations

import math
import threading
from typing import Callable, Optional

import numpy as np
from std_msgs.msg import Float64MultiArray

from dp_common.polled import take_all
from dp_controller.config import FollowerConfig
from dp_controller.follower import Follower
from dp_controller.jtc_output import RollingTrajectories
from dp_controller.node_inputs import ControllerActivity, JointStateInput, SpeedScalingInput


class CommandCycle:
    def __init__(self, follower: Follower, lock: threading.Lock, cfg: FollowerConfig, *,
                 now_fn: Callable[[], float], logger, context_ok: Callable[[], bool],
                 publisher, jtc: Optional[RollingTrajectories], activity: ControllerActivity,
                 joint_states: JointStateInput, joint_state_sub,
                 scaling: Optional[SpeedScalingInput], scaling_sub, js_every: int,
                 pose=None) -> None:
        """publisher: the command publisher (Float64MultiArray, JointTrajectory when `jtc` is
        given, PoseStamped when `pose` (ee_input.PoseOutput) is); *_sub: the polled
        subscriptions whose messages the inputs take."""
        self.follower, self.lock, self.cfg = follower, lock, cfg
        self.now_fn, self.logger, self.context_ok = now_fn, logger, context_ok
        self.publisher, self.jtc, self.activity = publisher, jtc, activity
        self.joint_states, self.joint_state_sub = joint_states, joint_state_sub
        self.scaling, self.scaling_sub = scaling, scaling_sub
        self.js_every = js_every
        self.pose = pose
        self._msg = Float64MultiArray()
        self._next_js_k = 0

    def reset(self) -> None:
        """An activation: joint states taken at the first tick."""
        self._next_js_k = 0

    def tick(self, k: int, mono_now: float) -> None:
        follower = self.follower
        if not self.activity.commanding:
            # The output controller is not active (controller manager's activity): command
            # nothing; the next tick after it is active starts from the measured position.
            if k >= self._next_js_k:
                self._next_js_k = k + self.js_every
                self._take_inputs()
            return
        if not follower.started:
            self._take_inputs()
        now = self.now_fn()
        preview = None
        with self.lock:
            if not follower.started:
                measured = self.joint_states.positions
                if measured is None or not self.activity.commanding:
                    return   # (re-checked here: the activity callback stops under this lock)
                follower.start(measured, now)
            q, _, _ = follower.step(now)   # catches up on skipped periods (see Follower.step)
            if self.jtc is not None and self.jtc.due(follower.plan_time(now)):
                preview = follower.preview(now, now + self.jtc.tfs, stop=True)
        self._publish(q, preview, now)
        # After the command is out: the measured state, at most every js_every ticks (a take
        # costs ~15-50 us here, mostly cold caches after the sleep).
        if k >= self._next_js_k:
            self._next_js_k = k + self.js_every
            self._supervise(now, self._take_inputs())

    def _publish(self, q, preview, now: float) -> None:
        try:
            if self.pose is not None:
                self.publisher.publish(self.pose.message(q, now))
            elif self.jtc is None:
                self._msg.data = q   # a list of floats (Follower.step)
                self.publisher.publish(self._msg)
            elif preview is not None:
                self.publisher.publish(self.jtc.fill(now, *preview))
        except Exception:
            if self.context_ok():
                raise   # a real failure; at shutdown the context goes first: stop quietly

    def _take(self, sub) -> list:
        try:
            return take_all(sub)
        except Exception:
            if self.context_ok():
                raise
            return []    # shutting down: the context went first

    def _take_inputs(self) -> bool:
        """Take the speed scaling and the joint states that arrived since the last take. True
        when a joint state was valid."""
        if self.scaling is not None:
            factor = self.scaling.take(self._take(self.scaling_sub), self.now_fn(),
                                       self.follower.speed_scaling)
            if factor is not None:
                with self.lock:
                    self.follower.set_speed_scaling(factor)
        return self.joint_states.take(self._take(self.joint_state_sub), self.now_fn())

    def _supervise(self, now: float, measured_now: bool) -> None:
        joint_states = self.joint_states
        if measured_now:
            self._supervise_tracking(now)
        elif joint_states.positions is not None:
            self._supervise_stale(now, joint_states.taken_at, 'joint_states_stale',
                                  self.joint_state_sub.topic_name,
                                  'the commands cannot be checked against the arm')
        scaling = self.scaling
        if scaling is None:
            return
        if math.isfinite(scaling.heard_at):
            # Silent for joint_state_timeout_s after it had spoken: the factor in use may be
            # stale (a pause that ended, a slider moved): hold as for silent joint states.
            self._supervise_stale(now, scaling.heard_at, 'speed_scaling_stale', scaling.topic,
                                  f'the factor in use ({100.0 * self.follower.speed_scaling:g} %) '
                                  'may be stale')
        else:
            scaling.warn_if_never_heard(now, self.follower.started, self.cfg.joint_state_timeout_s)

    def _supervise_stale(self, now: float, since: float, reason: str, topic: str,
                         consequence: str) -> None:
        """Follower.supervise_stale for one input, and the error log when it trips."""
        with self.lock:
            tripped = self.follower.supervise_stale(now, since, reason)
        if tripped:
            self.logger.error(f'nothing valid on {topic} for {now - since:.2f} s: {consequence}. '
                              'Holding; chunks are refused until ~/resume (or the next activation).')

    def _supervise_tracking(self, now: float) -> None:
        """After a valid joint state: tracking supervision (Follower.supervise)."""
        with self.lock:
            follower = self.follower
            command = follower.command[0]
            measured = self.joint_states.positions
            tripped = follower.supervise(measured, now, self.joint_states.velocities)
        if tripped:
            err = command - measured
            worst = int(np.argmax(np.abs(err)))
            self.logger.error(
                f'tracking fault: {self.cfg.joint_names[worst]} is {err[worst]:+.3f} rad from '
                f'the command for {self.cfg.tracking_timeout_s:g} s (tolerance '
                f'{self.cfg.tracking_tolerance_rad:g} rad): the controller does not execute the '
                'commands or the arm is stopped. Holding at the measured position; chunks are '
                'refused until ~/resume (or the next activation).')
