"""joint_trajectory_controller's acceptance rules and timing, per ROS 2 distribution (ROS-free).

The embedded simulation accepts trajectory_msgs/JointTrajectory on
`/joint_trajectory_controller/joint_trajectory` and treats it the way ros2_controllers'
joint_trajectory_controller (JTC) does on the selected distribution, so that what works here works
on a real ros2_control robot. Sources (ros2_controllers, joint_trajectory_controller):
`validate_trajectory_msg` and `update` in src/joint_trajectory_controller.cpp, `Trajectory::sample`
in src/trajectory.cpp, defaults in src/joint_trajectory_controller_parameters.yaml.

- Validation (a rejected message changes nothing, the current trajectory goes on; the messages are
  JTC's log lines, checked in Jazzy's and Kilted's order): joint names must be exactly the
  controller's (any order; `allow_partial_joints_goal` false; JTC does not check duplicate
  names, this refuses them), at least one point (an empty trajectory is refused, not a cancel),
  time_from_start strictly increasing,
  one finite position per joint per point (velocities: none or one per joint), a non-zero
  header.stamp whose last point is already in the past is refused, and unless
  `allow_nonzero_velocity_at_trajectory_end` the last point must be at rest (|v| <= float epsilon).
  That default is true on Humble and false since Jazzy: Jazzy and Kilted reject every trajectory
  whose last point moves.
- Replacement: a valid message replaces the current trajectory at the next controller update
  (`sample`), where the "point before the trajectory" is taken: the measured state (default on
  every distribution), or the last commanded (desired) state with
  `interpolate_from_desired_state` (Jazzy and newer; Humble's `open_loop_control`).
- Time: `header.stamp == 0` starts the trajectory at that first update; otherwise point i is due
  at `stamp + time_from_start[i]`. Before the first point: interpolation from the point before the
  trajectory; after it: between the message's points (a late trajectory is entered mid-way, no
  splice); after the last point: hold it.
- Interpolation (`splines`): cubic Hermite where the points carry velocities, linear otherwise.
- Speed scaling (`scaling_factor`, JTC's `~/speed_scaling_input` or speed_scaling state interface
  since Jazzy 4.39 / Kilted, and UR's scaled_joint_trajectory_controller): the trajectory's time
  starts at the update that takes it and advances by period x scaling factor at every update after
  (`traj_time_ += period * scaling_factor_`), so time_from_start is in scaled time.

Not here: messages (sim_node converts with dp_common.trajectories), limits (the physics clips to
joint limits), goal/path tolerances and the action interface, accelerations (quintic), effort
fields, the one-period-old time of the last command that Jazzy+ uses as the
point before with interpolate_from_desired_state (here: the current update's time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from dp_common.joints import JointIndexer

# Defaults of the parameters that differ per distribution (joint_trajectory_controller_parameters.yaml
# of ros2_controllers' humble, jazzy and kilted branches).
DISTROS = {
    'humble': dict(allow_nonzero_velocity_at_trajectory_end=True,
                   interpolate_from_desired_state=False),   # Humble: open_loop_control: false
    'jazzy': dict(allow_nonzero_velocity_at_trajectory_end=False,
                  interpolate_from_desired_state=False),
    'kilted': dict(allow_nonzero_velocity_at_trajectory_end=False,
                   interpolate_from_desired_state=False),
}
FLOAT_EPSILON = float(np.finfo(np.float32).eps)   # std::numeric_limits<float>::epsilon()


@dataclass
class _Trajectory:
    start: Optional[float]            # absolute start (s); None: stamp 0, set at the first sample
    t_from_start: np.ndarray          # (N,)
    positions: np.ndarray             # (N, J), controller joint order
    velocities: Optional[np.ndarray]  # (N, J) or None (linear interpolation)
    before_time: float = 0.0          # the point before the trajectory (set at the first sample)
    before_q: Optional[np.ndarray] = None
    before_v: Optional[np.ndarray] = None


class JointTrajectoryFollower:
    """The active trajectory of a JTC and the setpoint it commands at each update."""

    def __init__(self, joint_names: Sequence[str], initial_positions: Sequence[float],
                 distro: str = 'jazzy',
                 allow_nonzero_velocity_at_trajectory_end: Optional[bool] = None,
                 interpolate_from_desired_state: Optional[bool] = None) -> None:
        if distro not in DISTROS:
            raise ValueError(f'distro must be one of {sorted(DISTROS)}, got {distro!r}')
        defaults = DISTROS[distro]
        self.distro = distro
        self.allow_nonzero_velocity_at_trajectory_end = bool(
            defaults['allow_nonzero_velocity_at_trajectory_end']
            if allow_nonzero_velocity_at_trajectory_end is None
            else allow_nonzero_velocity_at_trajectory_end)
        self.interpolate_from_desired_state = bool(
            defaults['interpolate_from_desired_state'] if interpolate_from_desired_state is None
            else interpolate_from_desired_state)
        self.joint_names = [str(n) for n in joint_names]
        self._joints = JointIndexer(self.joint_names)
        q0 = np.asarray(initial_positions, dtype=np.float64).reshape(-1)
        if q0.shape[0] != len(self.joint_names):
            raise ValueError('initial_positions must have one value per joint')
        self._hold = q0.copy()
        self._desired_q = q0.copy()
        self._desired_v = np.zeros_like(q0)
        self._traj: Optional[_Trajectory] = None
        self._new: Optional[_Trajectory] = None
        self.scaling_factor = 1.0   # >= 0 (JTC refuses negative ones)
        self._lag = 0.0             # update time minus trajectory time (scaling below 1)

    @property
    def active(self) -> bool:
        """True while a trajectory (possibly finished, holding its last point) is in use or due."""
        return self._traj is not None or self._new is not None

    def reset(self, positions: Sequence[float]) -> None:
        """Drop any trajectory and hold `positions` (an episode reset, a forward command)."""
        self._traj = self._new = None
        self._hold = np.asarray(positions, dtype=np.float64).reshape(-1).copy()
        self._desired_q, self._desired_v = self._hold.copy(), np.zeros_like(self._hold)

    def set_trajectory(self, now_s: float, joint_names: Sequence[str], stamp_s: float,
                       t_from_start_s, positions, velocities=None) -> None:
        """A trajectory message received at now_s (JTC's topic callback): raises ValueError with
        JTC's reason to reject it; else it replaces the current one at the next sample()."""
        names = [str(n) for n in joint_names]
        t = np.asarray(t_from_start_s, dtype=np.float64).reshape(-1)
        pos = np.asarray(positions, dtype=np.float64)
        if len(names) != len(self.joint_names):
            raise ValueError("Joints on incoming trajectory don't match the controller joints.")
        if len(t) == 0:
            raise ValueError('Empty trajectory received.')
        for n in names:
            if n not in self.joint_names:
                raise ValueError(f"Incoming joint {n} doesn't match the controller's joints.")
        if len(set(names)) != len(names):
            raise ValueError("Joints on incoming trajectory don't match the controller joints.")
        vel = None if velocities is None else np.asarray(velocities, dtype=np.float64)
        if not self.allow_nonzero_velocity_at_trajectory_end and vel is not None:
            moving = np.nonzero(np.abs(vel[-1]) > FLOAT_EPSILON)[0]
            if len(moving):
                j = int(moving[0])
                raise ValueError(f'Velocity of last trajectory point of joint {names[j]} is not '
                                 f'zero: {vel[-1][j]:.15f}')
        if stamp_s != 0.0 and stamp_s + t[-1] < now_s:
            raise ValueError(f'Received trajectory with non-zero start time ({stamp_s:f}) that '
                             f'ends in the past ({stamp_s + t[-1]:f})')
        if np.any(np.diff(t) <= 0):
            i = int(np.nonzero(np.diff(t) <= 0)[0][0])
            raise ValueError(f'Time between points {i} and {i + 1} is not strictly increasing, '
                             f'it is {t[i]:f} and {t[i + 1]:f} respectively')
        if pos.shape != (len(t), len(names)) or not np.all(np.isfinite(pos)):
            raise ValueError(f'positions: {pos.shape} values, not one finite value per joint '
                             'in every point')
        if vel is not None and (vel.shape != pos.shape or not np.all(np.isfinite(vel))):
            raise ValueError('velocities: not one finite value per joint in every point')
        if not np.all(np.isfinite(t)):
            raise ValueError('time_from_start is not finite')
        order, _ = self._joints.indices(names)   # all there, each once: checked above
        self._new = _Trajectory(None if stamp_s == 0.0 else float(stamp_s), t, pos[:, order],
                                None if vel is None else vel[:, order])

    def update(self, t_s: float, period_s: float, measured_q=None,
               measured_v=None) -> tuple[np.ndarray, np.ndarray]:
        """One controller update at time t_s (JTC's update(time, period)): returns the setpoint
        (positions, velocities) it writes. A trajectory received since the last update starts
        here: the point before it is (t_s, the measured state `measured_q`, `measured_v`), or,
        with interpolate_from_desired_state, (t_s, the last setpoint); stamp 0 starts it at t_s.
        Jazzy and Kilted write the trajectory sampled one period ahead (`command_next_` at
        `traj_time_ + update_period_`), Humble the one at t_s."""
        if self._new is not None:
            tr, self._new = self._new, None
            if self.interpolate_from_desired_state or measured_q is None:
                q, v = self._desired_q, self._desired_v
            else:
                q = np.asarray(measured_q, dtype=np.float64)
                v = (np.zeros_like(q) if measured_v is None
                     else np.asarray(measured_v, dtype=np.float64))
            tr.before_time, tr.before_q, tr.before_v = t_s, q.copy(), v.copy()
            if tr.start is None:
                tr.start = t_s
            self._traj = tr
            self._lag = 0.0         # traj_time_ = time at the first sample
        elif self._traj is not None:
            self._lag += (1.0 - self.scaling_factor) * period_s
        ahead = 0.0 if self.distro == 'humble' else period_s
        q, v = self._sample(t_s - self._lag + ahead)
        self._desired_q, self._desired_v = q, v
        return q.copy(), v.copy()

    def sample(self, t_s: float, measured_q=None, measured_v=None) -> tuple[np.ndarray, np.ndarray]:
        """The setpoint at time t_s itself: an update without the one-period look-ahead."""
        return self.update(t_s, 0.0, measured_q, measured_v)
    def _sample(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        tr = self._traj
        if tr is None:
            return self._hold.copy(), np.zeros_like(self._hold)
        times = tr.start + tr.t_from_start
        if t_s < times[0]:        # before the first point: from the point before the trajectory
            v1 = None if tr.velocities is None else tr.velocities[0]
            return _interpolate(tr.before_time, tr.before_q, tr.before_v, times[0],
                                tr.positions[0], v1, t_s)
        if t_s >= times[-1]:
            return tr.positions[-1].copy(), np.zeros(tr.positions.shape[1])
        i = int(np.searchsorted(times, t_s, side='right')) - 1
        vel = tr.velocities
        return _interpolate(times[i], tr.positions[i], None if vel is None else vel[i],
                            times[i + 1], tr.positions[i + 1], None if vel is None else vel[i + 1],
                            t_s)


def _interpolate(t0, p0, v0, t1, p1, v1, t):
    """Cubic Hermite between (t0, p0, v0) and (t1, p1, v1) where both velocities are given,
    linear otherwise."""
    h = t1 - t0
    if h <= 0.0:
        return np.array(p1, dtype=np.float64), np.zeros_like(p1)
    s = (t - t0) / h
    if v0 is None or v1 is None:
        return p0 + s * (p1 - p0), (p1 - p0) / h
    m0, m1 = v0 * h, v1 * h
    h00 = 2 * s ** 3 - 3 * s ** 2 + 1
    h10 = s ** 3 - 2 * s ** 2 + s
    h01 = -2 * s ** 3 + 3 * s ** 2
    h11 = s ** 3 - s ** 2
    q = h00 * p0 + h10 * m0 + h01 * p1 + h11 * m1
    dh00 = 6 * s ** 2 - 6 * s
    dh10 = 3 * s ** 2 - 4 * s + 1
    dh01 = -6 * s ** 2 + 6 * s
    dh11 = 3 * s ** 2 - 2 * s
    return q, (dh00 * p0 + dh10 * m0 + dh01 * p1 + dh11 * m1) / h
