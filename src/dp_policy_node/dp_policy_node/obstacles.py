"""Obstacles for guided sampling from a visualization_msgs/MarkerArray (policy_node's
obstacles_topic), ROS-free: the message is read by its fields.

Markers are kept by (ns, id) across messages, as RViz keeps them: ADD (= MODIFY) sets one,
DELETE removes one, DELETEALL removes every one. Markers, in the URDF's root frame
(header.frame_id that frame, or '' for it):
- SPHERE: a sphere of radius max(scale) / 2 (an ellipsoid: its enclosing sphere);
- CYLINDER: scale.x = scale.y the diameter, scale.z the height; upright (orientation about z
  only) a cylinder, tilted a capsule along its axis (which contains it);
- CUBE: a box of half sizes scale / 2, rotated by the pose's orientation.
Anything else (another type, frame, NaN, a scale <= 0 or over 100 m, a position over 1 km, a
non-unit quaternion) is refused with a reason (and an earlier marker of that (ns, id) removed);
the rest of the message is used.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from dp_policy.guidance.costs import Obstacle

SPHERE, CYLINDER, CUBE = 2, 3, 1            # visualization_msgs/Marker type constants
ADD, DELETE, DELETEALL = 0, 2, 3            # Marker.action (MODIFY = ADD = 0)


def _rotation(q) -> np.ndarray:
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _rpy(R: np.ndarray) -> tuple[float, float, float]:
    """Fixed-axis roll, pitch, yaw of R (= Rz(yaw) Ry(pitch) Rx(roll), as costs._rpy_matrix)."""
    pitch = math.asin(max(-1.0, min(1.0, -R[2, 0])))
    if abs(R[2, 0]) < 1 - 1e-9:
        return math.atan2(R[2, 1], R[2, 2]), pitch, math.atan2(R[1, 0], R[0, 0])
    return math.atan2(-R[1, 2], R[1, 1]), pitch, 0.0


def marker_obstacle(m: Any, root_frame: str) -> Obstacle:
    """One ADD marker as an Obstacle; ValueError('code: detail') where it cannot be one."""
    if m.header.frame_id not in ('', root_frame):
        raise ValueError(f'obstacle_frame: marker {m.ns}/{m.id} in frame {m.header.frame_id!r}, '
                         f'not the URDF root {root_frame!r} (no tf here)')
    p, o, s = m.pose.position, m.pose.orientation, m.scale
    values = [p.x, p.y, p.z, o.x, o.y, o.z, o.w, s.x, s.y, s.z]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f'obstacle_nonfinite: marker {m.ns}/{m.id}')
    if min(s.x, s.y, s.z) <= 0 or max(s.x, s.y, s.z) > 100.0 or max(map(abs, values[:3])) > 1e3:
        raise ValueError(f'obstacle_scale: marker {m.ns}/{m.id} scale {s.x, s.y, s.z} at '
                         f'{p.x, p.y, p.z} (0 < scale <= 100 m, |position| <= 1 km)')
    norm = math.sqrt(o.x * o.x + o.y * o.y + o.z * o.z + o.w * o.w)
    if abs(norm - 1.0) > 1e-3:
        raise ValueError(f'obstacle_orientation: marker {m.ns}/{m.id}: not a unit quaternion')
    centre = (float(p.x), float(p.y), float(p.z))
    R = _rotation(type('Q', (), {k: getattr(o, k) / norm for k in 'xyzw'}))
    if m.type == SPHERE:
        return Obstacle('sphere', centre=centre, radius=max(s.x, s.y, s.z) / 2)
    if m.type == CUBE:
        return Obstacle('box', centre=centre, size=(s.x / 2, s.y / 2, s.z / 2), rpy=_rpy(R))
    if m.type == CYLINDER:
        radius, half = max(s.x, s.y) / 2, s.z / 2
        axis = R[:, 2]
        if abs(axis[2]) > 1 - 1e-9:                             # upright (either way up)
            return Obstacle('cylinder', centre=centre, radius=radius, size=(radius, radius, half))
        c = np.asarray(centre)
        return Obstacle('capsule', a=tuple(c - half * axis), b=tuple(c + half * axis),
                        radius=radius)
    raise ValueError(f'obstacle_type: marker {m.ns}/{m.id} type {m.type} (SPHERE, CYLINDER or '
                     'CUBE expected)')


def apply_markers(kept: dict, msg: Any, root_frame: str,
                  unreadable: Optional[set] = None) -> list[str]:
    """Apply a MarkerArray to `kept` ({(ns, id): Obstacle}, in place); the reasons of the markers
    refused. `unreadable` (in place): the (ns, id) of markers whose last ADD was refused, until a
    readable ADD, a DELETE of theirs or a DELETEALL (an obstacle that exists and is not known)."""
    refused = []
    unreadable = set() if unreadable is None else unreadable
    for m in msg.markers:
        key = (m.ns, m.id)
        if m.action == DELETEALL:
            kept.clear()
            unreadable.clear()
        elif m.action == DELETE:
            kept.pop(key, None)
            unreadable.discard(key)
        else:
            try:
                kept[key] = marker_obstacle(m, root_frame)
                unreadable.discard(key)
            except ValueError as err:
                kept.pop(key, None)
                unreadable.add(key)
                refused.append(str(err))
    return refused


def markers_to_obstacles(msg: Any, root_frame: str) -> tuple[list[Obstacle], list[str]]:
    """(the obstacle set one MarkerArray gives on its own, the reasons of the markers refused)."""
    kept: dict = {}
    refused = apply_markers(kept, msg, root_frame)
    return list(kept.values()), refused


class TopicObstacles:
    """policy_node's obstacles_topic input: the markers kept by (ns, id) are the topic's obstacle
    set, handed (with the obstacles parameter's) to the inference worker for its next tick after
    each message; refused markers are counted in the status book's rejected and logged
    (rate-limited). `required`: the worker publishes no chunk before the first message, nor
    while a marker is unreadable (its last ADD refused, not deleted since: the set is then
    incomplete); else only the parameter's obstacles are guarded until the first message."""

    WAITING, INCOMPLETE = 'waiting_for_obstacles', 'obstacles_incomplete'

    def __init__(self, guidance: Any, book: Any, logger: Any, required: bool = True) -> None:
        self.required = required
        self.configured = list(guidance.c.obstacles)      # the obstacles parameter's
        self.root_frame = guidance.c.kinematics.chain.link_names[0]
        self.book, self.logger = book, logger
        self.worker: Any = None
        self.in_use: Optional[int] = None
        self.kept: dict = {}                              # (ns, id) -> Obstacle, across messages
        self.unreadable: set = set()                      # (ns, id) whose last ADD was refused

    def on_message(self, msg: Any) -> None:
        refused = apply_markers(self.kept, msg, self.root_frame, self.unreadable)
        obstacles = list(self.kept.values())
        for reason in refused:
            code, _, detail = reason.partition(': ')
            self.book.rejected(code)
            self.logger.warning(f'obstacles: marker refused: {reason}', throttle_duration_sec=5.0)
        worker = self.worker
        if worker is None:
            return
        hold = self.INCOMPLETE if (self.required and self.unreadable) else ''
        worker.set_obstacles(self.configured + obstacles, hold)
        if len(obstacles) != self.in_use:
            self.in_use = len(obstacles)
            self.logger.info(f'obstacles: {len(obstacles)} from the topic '
                             f'({", ".join(o.kind for o in obstacles) or "none"}), '
                             f'{len(self.configured)} from the parameter')
