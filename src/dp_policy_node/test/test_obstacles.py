"""Obstacles from visualization_msgs/MarkerArray (dp_policy_node.obstacles), on real messages."""
import math

import numpy as np
import pytest
import torch

visualization_msgs = pytest.importorskip('visualization_msgs.msg')
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from dp_policy.guidance.costs import _rpy_matrix  # noqa: E402
from dp_policy_node.obstacles import (_rotation, _rpy, apply_markers,  # noqa: E402
                                      markers_to_obstacles)


def marker(kind, xyz=(0.0, 0.0, 0.0), scale=(0.1, 0.1, 0.1), quat=(0.0, 0.0, 0.0, 1.0),
           frame='world', action=Marker.ADD, mid=0):
    m = Marker()
    m.header.frame_id = frame
    m.ns, m.id, m.type, m.action = 'test', mid, kind, action
    m.pose.position.x, m.pose.position.y, m.pose.position.z = xyz
    (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
     m.pose.orientation.w) = quat
    m.scale.x, m.scale.y, m.scale.z = scale
    return m


def dist(obstacle, p):
    return float(obstacle.distance(torch.tensor(p, dtype=torch.float64)))


def test_rpy_of_a_rotation_rebuilds_it():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        o = type('Q', (), dict(zip('xyzw', q)))
        R = _rotation(o)
        assert np.allclose(np.array(_rpy_matrix(_rpy(R))), R, atol=1e-9)


def test_sphere_cylinder_capsule_and_box_from_markers():
    half_turn_x = (math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4))    # 90 deg about x
    yaw45 = (0.0, 0.0, math.sin(math.pi / 8), math.cos(math.pi / 8))
    msg = MarkerArray(markers=[
        marker(Marker.SPHERE, (1, 0, 0), (0.2, 0.1, 0.1)),                  # radius 0.1 (max)
        marker(Marker.CYLINDER, (0, 1, 0.03), (0.05, 0.05, 0.06), mid=1),   # upright post
        marker(Marker.CYLINDER, (0, 0, 1), (0.1, 0.1, 0.4), half_turn_x, mid=2),   # lying on y
        marker(Marker.CUBE, (2, 0, 0), (0.2, 0.4, 0.2), yaw45, frame='', mid=3),
    ])
    obstacles, refused = markers_to_obstacles(msg, 'world')
    assert refused == []
    assert [o.kind for o in obstacles] == ['sphere', 'cylinder', 'capsule', 'box']
    sphere, post, capsule, box = obstacles
    assert dist(sphere, (1.3, 0, 0)) == pytest.approx(0.2)
    assert dist(post, (0.1, 1, 0.03)) == pytest.approx(0.075)
    assert dist(post, (0, 1, 0.16)) == pytest.approx(0.1)                  # above its top
    # the cylinder lies along y after 90 deg about x: its ends at y = +-0.2
    assert dist(capsule, (0, 0.2 + 0.05 + 0.3, 1)) == pytest.approx(0.3)
    assert dist(capsule, (0, 0, 1.25)) == pytest.approx(0.2)
    # the box turned by 45 deg about z: its long half side (0.2) along the diagonal
    d = np.array([-1.0, 1.0]) / math.sqrt(2)
    assert dist(box, (2 + 0.5 * d[0], 0.5 * d[1], 0)) == pytest.approx(0.3)


def test_bad_markers_are_refused_with_reasons_and_the_rest_used():
    msg = MarkerArray(markers=[
        marker(Marker.SPHERE, (1, 0, 0), frame='camera'),
        marker(Marker.SPHERE, (float('nan'), 0, 0)),
        marker(Marker.SPHERE, scale=(0.0, 0.1, 0.1)),
        marker(Marker.SPHERE, quat=(0.0, 0.0, 0.0, 0.5)),
        marker(Marker.ARROW),
        marker(Marker.SPHERE, (0, 0, 3), mid=7),
    ])
    obstacles, refused = markers_to_obstacles(msg, 'world')
    assert [r.split(':')[0] for r in refused] == [
        'obstacle_frame', 'obstacle_nonfinite', 'obstacle_scale', 'obstacle_orientation',
        'obstacle_type']
    assert len(obstacles) == 1 and obstacles[0].centre == (0.0, 0.0, 3.0)


def test_markers_are_kept_by_ns_and_id_across_messages_as_rviz_keeps_them():
    kept = {}
    apply_markers(kept, MarkerArray(markers=[marker(Marker.SPHERE, mid=1),
                                             marker(Marker.CUBE, (1, 1, 1), mid=2)]), 'world')
    apply_markers(kept, MarkerArray(markers=[marker(Marker.SPHERE, (0, 0, 2), mid=3)]), 'world')
    assert sorted(k[1] for k in kept) == [1, 2, 3]                   # one marker a message
    apply_markers(kept, MarkerArray(markers=[marker(Marker.SPHERE, action=Marker.DELETE, mid=2),
                                             marker(Marker.SPHERE, (0, 0, 5), mid=1)]), 'world')
    assert sorted(k[1] for k in kept) == [1, 3] and kept[('test', 1)].centre == (0.0, 0.0, 5.0)
    refused = apply_markers(kept, MarkerArray(markers=[marker(Marker.SPHERE, frame='cam', mid=3)]),
                            'world')
    assert refused and sorted(k[1] for k in kept) == [1]            # refused: the old one goes
    apply_markers(kept, MarkerArray(markers=[marker(0, action=Marker.DELETEALL),
                                             marker(Marker.CUBE, (1, 1, 1), mid=9)]), 'world')
    assert list(kept) == [('test', 9)]


def test_a_cylinder_upside_down_is_still_upright_and_huge_markers_are_refused():
    flipped = (1.0, 0.0, 0.0, 0.0)                                      # 180 deg about x
    obstacles, refused = markers_to_obstacles(MarkerArray(markers=[
        marker(Marker.CYLINDER, (0, 1, 0.03), (0.05, 0.05, 0.06), flipped),
        marker(Marker.SPHERE, scale=(1e300, 1.0, 1.0), mid=1)]), 'world')
    assert [o.kind for o in obstacles] == ['cylinder']
    assert [r.split(':')[0] for r in refused] == ['obstacle_scale']
