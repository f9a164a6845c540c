"""End-effector chunks (dp_msgs/ActionChunk with action_space 'ee_pose') -> joint chunks.

The follower drives joints; an end-effector policy publishes poses of a tip link (ActionChunk
`poses`, in header.frame_id, one per trajectory point). EndEffectorInput turns them into joint
positions of the configured joints with the inverse kinematics of the arm's URDF
(dp_common.ee_space: damped least squares, every solution inside the URDF limits, each pose
warm-started from the previous solution, the first from the command in force), and refuses a
chunk it cannot follow faithfully, with a reason the node counts and logs:

  ee_not_configured   no robot_description_file: the follower cannot do inverse kinematics
  ee_frame            the poses are of another link or in another frame than the URDF's (or
                      name none)
  bad_shape           not one finite pose per point, or a non-unit quaternion (|q| off by > 1e-3)
  ik_unreachable      a pose farther than ik_position_tolerance_m / ik_orientation_tolerance_rad
                      from the closest the arm reaches inside its limits (solving stops there)
  ik_discontinuous    two consecutive solutions farther apart than twice the velocity limit
                      allows between their times (a change of IK branch: the tip would leave
                      the path between them)

The joint chunk then goes through Follower.on_chunk like any other: the limits, the execution
mode, the watchdog. ROS-free apart from reading message fields.
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional

import numpy as np

from dp_common.ee_space import EndEffectorSpace
from dp_common.rotations import matrix_to_rot6d, quat_to_matrix

EE_POSE = 'ee_pose'


class EeRejected(Exception):
    def __init__(self, reason: str, detail: str = '') -> None:
        super().__init__(f'{reason}: {detail}' if detail else reason)
        self.reason, self.detail = reason, detail


class EndEffectorInput:
    def __init__(self, urdf: Optional[str], tip_link: str, joint_names: list,
                 position_tolerance_m: float = 0.005, orientation_tolerance_rad: float = 0.05,
                 lower=None, upper=None, max_velocity=None) -> None:
        """urdf: a path or the text (None/'': end-effector chunks are refused, ee_not_configured);
        lower, upper: the follower's position limits (joint_names order), where inverse
        kinematics keeps its solutions (inside the URDF's too)."""
        self.space = EndEffectorSpace(urdf, tip_link, joint_names) if urdf else None
        if self.space is not None and lower is not None and upper is not None:
            self.space.restrict_limits(lower, upper)
        self.max_velocity = None if max_velocity is None else np.asarray(max_velocity, dtype=float)
        self.position_tolerance_m = float(position_tolerance_m)
        self.orientation_tolerance_rad = float(orientation_tolerance_rad)
        if not (self.position_tolerance_m > 0 and self.orientation_tolerance_rad > 0):
            raise ValueError('ik_position_tolerance_m and ik_orientation_tolerance_rad must be > 0')
        self.last_solve_s = math.nan      # wall time of the last chunk's inverse kinematics
        self.worst_position_error_m = math.nan
        self.worst_orientation_error_rad = math.nan

    def joint_chunk(self, msg: Any, q_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t_from_start (N,), positions (N, J)) for an ActionChunk of poses; raises EeRejected."""
        if self.space is None:
            raise EeRejected('ee_not_configured', 'end-effector chunk, but no '
                             'robot_description_file (URDF) to solve inverse kinematics with')
        sp = self.space
        if msg.ee_link != sp.tip_link:
            raise EeRejected('ee_frame', f'poses of {msg.ee_link!r}, the follower solves for '
                                         f'{sp.tip_link!r} (tip_link)')
        if msg.header.frame_id != sp.root_frame:
            raise EeRejected('ee_frame', f'poses in frame {msg.header.frame_id!r}, the URDF root '
                                         f'is {sp.root_frame!r}')
        pts, poses = msg.trajectory.points, msg.poses
        if len(poses) != len(pts) or len(pts) == 0:
            raise EeRejected('bad_shape', f'{len(poses)} poses for {len(pts)} points')
        t = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in pts])
        xyz = np.array([[p.position.x, p.position.y, p.position.z] for p in poses])
        quat = np.array([[p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]
                         for p in poses])
        if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat)) and np.all(np.isfinite(t))):
            raise EeRejected('bad_shape', 'non-finite pose or time')
        norms = np.linalg.norm(quat, axis=1)
        if np.any(np.abs(norms - 1.0) > 1e-3):
            raise EeRejected('bad_shape', f'quaternion norm {norms[np.argmax(np.abs(norms - 1))]:.4f}')
        vectors = np.concatenate([xyz, matrix_to_rot6d(quat_to_matrix(quat))], axis=1)
        t0 = time.perf_counter()
        ik = sp.joint_path(vectors, q_start, give_up=(self.position_tolerance_m,
                                                      self.orientation_tolerance_rad))
        self.last_solve_s = time.perf_counter() - t0
        pe, oe = ik.worst()
        self.worst_position_error_m, self.worst_orientation_error_rad = pe, oe
        if pe > self.position_tolerance_m or oe > self.orientation_tolerance_rad:
            i = len(ik.q) - 1                     # solving stopped at the first one too far
            raise EeRejected('ik_unreachable',
                             f'pose {i} ({xyz[i, 0]:.3f}, {xyz[i, 1]:.3f}, {xyz[i, 2]:.3f}) m: '
                             f'closest within the limits is {ik.position_error_m[i] * 1e3:.1f} mm / '
                             f'{ik.orientation_error_rad[i]:.3f} rad away')
        if self.max_velocity is not None and len(t) > 1:
            rate = np.abs(np.diff(ik.q, axis=0)) / np.maximum(np.diff(t), 1e-9)[:, None]
            ratio = rate / (2.0 * self.max_velocity)
            if np.max(ratio) > 1.0:
                i, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
                raise EeRejected('ik_discontinuous',
                                 f'joint {sp.joint_names[j]} moves {rate[i, j]:.2f} rad/s between '
                                 f'poses {i} and {i + 1} (twice its limit: '
                                 f'{2 * self.max_velocity[j]:.2f})')
        return t, ik.q


class PoseOutput:
    """output_mode pose_stamped: the tip pose of each joint command (forward kinematics of the
    URDF) as a geometry_msgs/PoseStamped in the URDF's root frame, stamped with the node clock
    at publication (MoveIt Servo drops a pose older than its incoming_command_timeout, 0.1 s by
    default: moveit_servo's servo_node.cpp compares now with header.stamp)."""

    def __init__(self, space: EndEffectorSpace) -> None:
        from geometry_msgs.msg import PoseStamped
        self.space = space
        self.msg = PoseStamped()
        self.msg.header.frame_id = space.root_frame

    def message(self, q, now_s: float):
        from dp_common.rotations import matrix_to_quat
        from dp_common.stamps import sec_to_sec_nanosec
        T = self.space.pose(np.asarray(q, dtype=np.float64))
        w, x, y, z = matrix_to_quat(T[:3, :3])
        msg = self.msg
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec_to_sec_nanosec(now_s)
        p, o = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = float(T[0, 3]), float(T[1, 3]), float(T[2, 3])
        o.w, o.x, o.y, o.z = float(w), float(x), float(y), float(z)
        return msg
