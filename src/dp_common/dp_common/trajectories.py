"""Conversions between trajectory_msgs/JointTrajectory and numpy arrays.

The one place in dp_ros that turns a JointTrajectory into arrays and back (policy node, follower,
simulation and bag readers all use it). ROS-free at import: message classes are imported lazily in
`arrays_to_joint_trajectory`, and `joint_trajectory_to_arrays` is duck typed, so it works on rclpy
messages and on messages deserialized by `rosbags` alike.

Not here: joint-name matching/reordering policy (callers decide which joints they need) and any
validation beyond shapes (finite values, monotonic times and limits are the follower's business).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from dp_common.stamps import sec_to_sec_nanosec, stamp_to_sec

__all__ = ['joint_trajectory_to_arrays', 'arrays_to_joint_trajectory']


def joint_trajectory_to_arrays(msg: Any) -> tuple[list[str], np.ndarray, np.ndarray,
                                                   Optional[np.ndarray]]:
    """JointTrajectory (rclpy or rosbags) -> (joint_names, t_from_start, positions, velocities).

    Returns:
        joint_names: list of J names in message order.
        t_from_start: (N,) float64 seconds (point.time_from_start).
        positions: (N, J) float64 radians.
        velocities: (N, J) float64 rad/s if every point carries J velocities, None if no point
            carries any.

    Raises ValueError if a point's positions (or, where some points carry them, velocities) do not
    have exactly J entries. Values are not checked (NaN/inf pass through to the caller's checks).
    """
    names = [str(n) for n in msg.joint_names]
    n_joints = len(names)
    points = list(msg.points)
    n = len(points)
    t = np.empty((n,), dtype=np.float64)
    pos = np.empty((n, n_joints), dtype=np.float64)
    vels = []
    for i, p in enumerate(points):
        t[i] = stamp_to_sec(p.time_from_start)
        q = np.asarray(p.positions, dtype=np.float64).reshape(-1)
        if q.shape[0] != n_joints:
            raise ValueError(f'point {i} has {q.shape[0]} positions for {n_joints} joints')
        pos[i] = q
        vels.append(np.asarray(p.velocities, dtype=np.float64).reshape(-1))
    have_vel = [v.shape[0] > 0 for v in vels]
    if n == 0 or not any(have_vel):
        return names, t, pos, None
    if not all(have_vel):
        raise ValueError('velocities given on some points only')
    vel = np.empty((n, n_joints), dtype=np.float64)
    for i, v in enumerate(vels):
        if v.shape[0] != n_joints:
            raise ValueError(f'point {i} has {v.shape[0]} velocities for {n_joints} joints')
        vel[i] = v
    return names, t, pos, vel


def arrays_to_joint_trajectory(joint_names: Sequence[str], t_from_start_s: Sequence[float],
                               positions: Any, velocities: Any = None, stamp: Any = None,
                               frame_id: str = ''):
    """Arrays -> trajectory_msgs.msg.JointTrajectory (rclpy message).

    Args:
        joint_names: J names.
        t_from_start_s: (N,) seconds from header.stamp.
        positions: (N, J) radians.
        velocities: optional (N, J) rad/s.
        stamp: header stamp: None (zero stamp, which joint_trajectory_controller reads as "start
            now"), float seconds, a builtin_interfaces Time, or an rclpy Time (has `to_msg`).
        frame_id: header.frame_id.
    """
    from builtin_interfaces.msg import Duration, Time
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    names = [str(n) for n in joint_names]
    t = np.asarray(t_from_start_s, dtype=np.float64).reshape(-1)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape != (t.shape[0], len(names)):
        raise ValueError(f'positions shape {pos.shape} != ({t.shape[0]}, {len(names)})')
    vel = None
    if velocities is not None:
        vel = np.asarray(velocities, dtype=np.float64)
        if vel.shape != pos.shape:
            raise ValueError(f'velocities shape {vel.shape} != positions shape {pos.shape}')

    msg = JointTrajectory()
    msg.header.frame_id = frame_id
    if stamp is None:
        msg.header.stamp = Time()
    elif hasattr(stamp, 'to_msg'):
        msg.header.stamp = stamp.to_msg()
    elif isinstance(stamp, (int, float, np.floating, np.integer)):
        sec, nanosec = sec_to_sec_nanosec(float(stamp))
        msg.header.stamp = Time(sec=sec, nanosec=nanosec)
    else:
        msg.header.stamp = stamp
    msg.joint_names = names
    points = []
    for i in range(t.shape[0]):
        sec, nanosec = sec_to_sec_nanosec(float(t[i]))
        p = JointTrajectoryPoint()
        p.positions = pos[i].tolist()
        if vel is not None:
            p.velocities = vel[i].tolist()
        p.time_from_start = Duration(sec=sec, nanosec=nanosec)
        points.append(p)
    msg.points = points
    return msg
