"""Joint-trajectory following with ros2_controllers' joint_trajectory_controller semantics (ROS-free).

The embedded simulation accepts trajectory_msgs/JointTrajectory on
`/joint_trajectory_controller/joint_trajectory` and must treat it the way joint_trajectory_controller
(JTC) does, so that a node tested here behaves the same on a real ros2_control robot:

- A new trajectory replaces the current one as soon as it is received (no queueing). Between the
  receipt time and the first point it interpolates from the setpoint the controller had at receipt
  (like JTC with `open_loop_control`; JTC's default starts from the measured state, which differs
  by the tracking error only).
- `header.stamp == 0` means "start now" (the receipt time); otherwise point i is due at
  `header.stamp + time_from_start[i]`. Points already in the past are skipped by sampling.
- Interpolation between points: cubic Hermite when every point has velocities, linear when only
  positions are given (JTC's `splines` method; accelerations are not used here).
- After the last point the controller holds the last point's positions.
- An empty trajectory cancels the current one: hold the current setpoint.
- Rejected (ValueError, the current trajectory goes on): joints that are not exactly the
  controller's joints (any order is fine, they are matched by name), non-increasing
  time_from_start, non-finite values, or a trajectory whose last point is already in the past.

Not here: messages (sim_node converts with dp_common.trajectories), limits (the physics clips to
joint limits), goal tolerances and actions (no control_msgs on this machine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass
class _Trajectory:
    times: np.ndarray                 # (N+1,) absolute seconds; index 0 = the splice point
    positions: np.ndarray             # (N+1, J)
    velocities: Optional[np.ndarray]  # (N+1, J) or None (linear interpolation)


class JointTrajectoryFollower:
    """Holds the active trajectory and samples the setpoint at a given time."""

    def __init__(self, joint_names: Sequence[str], initial_positions: Sequence[float]) -> None:
        self.joint_names = [str(n) for n in joint_names]
        q0 = np.asarray(initial_positions, dtype=np.float64).reshape(-1)
        if q0.shape[0] != len(self.joint_names):
            raise ValueError('initial_positions must have one value per joint')
        self._hold = q0.copy()
        self._traj: Optional[_Trajectory] = None

    @property
    def active(self) -> bool:
        """True while a trajectory (possibly finished, holding its last point) is in use."""
        return self._traj is not None

    def end_time(self) -> Optional[float]:
        return None if self._traj is None else float(self._traj.times[-1])

    def reset(self, positions: Sequence[float]) -> None:
        """Drop any trajectory and hold `positions` (e.g. after an episode reset)."""
        self._traj = None
        self._hold = np.asarray(positions, dtype=np.float64).reshape(-1).copy()

    def set_trajectory(self, now_s: float, joint_names: Sequence[str], stamp_s: float,
                       t_from_start_s: np.ndarray, positions: np.ndarray,
                       velocities: Optional[np.ndarray] = None) -> None:
        """Accept a trajectory received at now_s (raises ValueError to reject it)."""
        names = [str(n) for n in joint_names]
        t = np.asarray(t_from_start_s, dtype=np.float64).reshape(-1)
        pos = np.asarray(positions, dtype=np.float64)
        if len(t) == 0:
            self._hold, _ = self.sample(now_s)
            self._traj = None
            return
        if sorted(names) != sorted(self.joint_names) or len(set(names)) != len(names):
            raise ValueError(f'joints {names} do not match the controller joints {self.joint_names}')
        order = [names.index(n) for n in self.joint_names]
        if pos.shape != (len(t), len(names)):
            raise ValueError(f'positions shape {pos.shape} != ({len(t)}, {len(names)})')
        pos = pos[:, order]
        vel = None
        if velocities is not None:
            vel = np.asarray(velocities, dtype=np.float64)
            if vel.shape != (len(t), len(names)):
                raise ValueError(f'velocities shape {vel.shape} != ({len(t)}, {len(names)})')
            vel = vel[:, order]
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(pos))
                and (vel is None or np.all(np.isfinite(vel)))):
            raise ValueError('non-finite value in trajectory')
        if np.any(t < 0) or np.any(np.diff(t) <= 0):
            raise ValueError('time_from_start must be non-negative and strictly increasing')
        start = now_s if stamp_s == 0.0 else float(stamp_s)
        abs_t = start + t
        if abs_t[-1] < now_s:
            raise ValueError(f'trajectory ends in the past ({abs_t[-1]:.3f} s < now {now_s:.3f} s)')
        q_now, qd_now = self.sample(now_s)
        if abs_t[0] > now_s:
            times = np.concatenate([[now_s], abs_t])
            pos_all = np.vstack([q_now, pos])
            vel_all = None if vel is None else np.vstack([qd_now, vel])
        else:  # first point(s) already due: no splice segment needed
            times, pos_all, vel_all = abs_t, pos, vel
        self._traj = _Trajectory(times, pos_all, vel_all)

    def sample(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Setpoint (positions, velocities) at time t_s; holds when no trajectory or after its end."""
        tr = self._traj
        if tr is None:
            return self._hold.copy(), np.zeros_like(self._hold)
        times = tr.times
        if t_s >= times[-1]:
            return tr.positions[-1].copy(), np.zeros(tr.positions.shape[1])
        if t_s <= times[0]:
            return tr.positions[0].copy(), (np.zeros(tr.positions.shape[1]) if tr.velocities is None
                                            else tr.velocities[0].copy())
        i = int(np.searchsorted(times, t_s, side='right')) - 1
        t0, t1 = times[i], times[i + 1]
        h = t1 - t0
        s = (t_s - t0) / h
        p0, p1 = tr.positions[i], tr.positions[i + 1]
        if tr.velocities is None:
            return p0 + s * (p1 - p0), (p1 - p0) / h
        v0, v1 = tr.velocities[i] * h, tr.velocities[i + 1] * h
        h00 = 2 * s ** 3 - 3 * s ** 2 + 1
        h10 = s ** 3 - 2 * s ** 2 + s
        h01 = -2 * s ** 3 + 3 * s ** 2
        h11 = s ** 3 - s ** 2
        q = h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1
        dh00 = 6 * s ** 2 - 6 * s
        dh10 = 3 * s ** 2 - 4 * s + 1
        dh01 = -6 * s ** 2 + 6 * s
        dh11 = 3 * s ** 2 - 2 * s
        qd = (dh00 * p0 + dh10 * v0 + dh01 * p1 + dh11 * v1) / h
        return q, qd
