"""The joint_trajectory output of follower_node: short rolling trajectories for
joint_trajectory_controller (or UR's scaled controller), one reused message.

Every 1/jtc_rate_hz of plan time (`due`) the node sends the follower's preview (Follower.preview:
points at offsets `tfs`, within the limits) followed by its braking tail (every joint brakes to
rest, the last point at zero velocity), so that joint_trajectory_controller's default
allow_nonzero_velocity_at_trajectory_end: false accepts every trajectory, and a stream that stops
ends in a braked standstill. One JointTrajectory is reused for every send: names and the preview
points' times fixed, `fill` sets stamp, positions, velocities and the tail's times (9 instead of
44 us per message). ROS message types only; no node.
"""
from __future__ import annotations

import math

import numpy as np
from trajectory_msgs.msg import JointTrajectory

from dp_common.stamps import sec_to_sec_nanosec
from dp_common.trajectories import arrays_to_joint_trajectory
from dp_controller.config import FollowerConfig
from dp_controller.preview import STOP_DT_S


class RollingTrajectories:
    def __init__(self, cfg: FollowerConfig, rate_hz: float, horizon_s: float, points: int,
                 stamp_clock: bool) -> None:
        """rate_hz, horizon_s, points: jtc_rate_hz, jtc_horizon_s, jtc_points; stamp_clock:
        jtc_stamp 'clock' (else the stamp stays zero: the controller starts it on reading)."""
        self.stamp_clock = stamp_clock
        self._dt = cfg.period_s
        # A whole number of control periods (of plan time: `due`).
        self.period = max(1, int(round(cfg.control_rate_hz / rate_hz))) / cfg.control_rate_hz
        n_pts = max(1, int(points))
        self.tfs = np.linspace(0.0, horizon_s, n_pts + 1)[1:]   # the preview points' offsets
        # Points enough for the longest braking tail, made once.
        n_tail = int(math.ceil(float(np.max(cfg.vmax / cfg.amax)) / STOP_DT_S)) + 2
        zeros = np.zeros((n_pts + n_tail, cfg.num_joints))
        tfs = self.tfs[-1] + np.arange(n_pts + n_tail) * STOP_DT_S
        tfs[:n_pts] = self.tfs
        self._msg = arrays_to_joint_trajectory(cfg.joint_names, tfs, zeros, zeros)
        self._points = list(self._msg.points)
        self._n_preview = n_pts
        self._next_tau = -math.inf

    def reset(self) -> None:
        """The next call of `due` says yes (an activation)."""
        self._next_tau = -math.inf

    def due(self, tau: float) -> bool:
        """A rolling trajectory is due every `period` of plan time (of the clock at full speed;
        half a control period early, so that it keeps its period under jitter). Under speed
        scaling the controller executes the current one at the same rate, and at a factor of 0
        nothing new is sent: a new trajectory would restart from the controller's state, which
        since Jazzy is sampled one (unscaled) period ahead, and so creep forward."""
        if tau >= self._next_tau or tau < self._next_tau - 2 * self.period:
            self._next_tau = tau + self.period - 0.5 * self._dt
            return True
        return False

    def fill(self, stamp: float, pq: np.ndarray, pv: np.ndarray, stop) -> JointTrajectory:
        """The message: the preview points (pq, pv at offsets `tfs`), then the braking tail
        `stop` = (times, positions, velocities). Times and velocities are the follower's plan
        time (Follower.preview with scaled_time_output), which is the controller's trajectory
        time: under speed scaling the controller advances it at the factor itself."""
        msg = self._msg
        if self.stamp_clock:
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec_to_sec_nanosec(stamp)
        points = self._points
        for point, q, v in zip(points, pq, pv):
            point.positions = q.tolist()
            point.velocities = v.tolist()
        t_tail, q_tail, v_tail = stop
        n = self._n_preview
        for point, t, q, v in zip(points[n:], t_tail, q_tail, v_tail):
            point.positions = q.tolist()
            point.velocities = v.tolist()   # the last one exactly zero: the controller's check
            point.time_from_start.sec, point.time_from_start.nanosec = sec_to_sec_nanosec(
                t - stamp)
        msg.points = points[:n + min(len(t_tail), len(points) - n)]
        return msg
