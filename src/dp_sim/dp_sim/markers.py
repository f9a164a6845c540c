"""The simulation's obstacles as a visualization_msgs/MarkerArray (what RViz draws and what
policy_node's guidance reads from its obstacles_topic): one CYLINDER marker a post, in the world
frame (the URDF's root link), `action` ADD, no lifetime. The message replaces every earlier one."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from visualization_msgs.msg import MarkerArray


def obstacle_markers(obstacles: Sequence[tuple], frame_id: str, stamp) -> 'MarkerArray':
    """obstacles: ArmTaskEnv.obstacles() tuples (name, centre (x, y, z), radius, half height)."""
    from visualization_msgs.msg import Marker, MarkerArray
    out = MarkerArray()
    for i, (name, centre, radius, half_height) in enumerate(obstacles):
        m = Marker()
        m.header.frame_id = frame_id
        m.header.stamp = stamp
        m.ns, m.id = name, i
        m.type, m.action = Marker.CYLINDER, Marker.ADD
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in centre)
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = 2.0 * float(radius)            # diameter
        m.scale.z = 2.0 * float(half_height)                   # height
        m.color.r, m.color.g, m.color.b, m.color.a = 0.1, 0.3, 1.0, 1.0
        out.markers.append(m)
    return out
