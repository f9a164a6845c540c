"""Tests of dp_common.trajectories: JointTrajectory <-> arrays, with rclpy and rosbags messages."""
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from dp_common.stamps import sec_to_sec_nanosec
from dp_common.trajectories import arrays_to_joint_trajectory, joint_trajectory_to_arrays


def _duck_msg(names, t, pos, vel=None):
    points = []
    for i, ti in enumerate(t):
        sec, nsec = sec_to_sec_nanosec(ti)
        points.append(SimpleNamespace(
            positions=list(pos[i]), velocities=[] if vel is None else list(vel[i]),
            accelerations=[], time_from_start=SimpleNamespace(sec=sec, nanosec=nsec)))
    return SimpleNamespace(joint_names=list(names), points=points)


def test_import_is_ros_free():
    code = ('import sys, dp_common.trajectories; '
            'assert "rclpy" not in sys.modules and "trajectory_msgs" not in sys.modules')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_seconds_to_sec_nanosec():
    assert sec_to_sec_nanosec(1.5) == (1, 500_000_000)
    assert sec_to_sec_nanosec(-0.25) == (-1, 750_000_000)
    assert sec_to_sec_nanosec(0.9999999999) == (1, 0)
    with pytest.raises(ValueError):
        sec_to_sec_nanosec(float('nan'))


def test_duck_typed_message_to_arrays():
    t = np.array([0.0, 0.1, 0.2])
    pos = np.arange(6.0).reshape(3, 2)
    names, tt, pp, vv = joint_trajectory_to_arrays(_duck_msg(['a', 'b'], t, pos))
    assert names == ['a', 'b'] and vv is None
    np.testing.assert_allclose(tt, t, atol=1e-9)
    np.testing.assert_array_equal(pp, pos)
    assert pp.dtype == np.float64 and pp.shape == (3, 2)


def test_velocities_and_shape_errors():
    t = np.array([0.0, 0.1])
    pos = np.zeros((2, 2))
    vel = np.ones((2, 2))
    *_, vv = joint_trajectory_to_arrays(_duck_msg(['a', 'b'], t, pos, vel))
    np.testing.assert_array_equal(vv, vel)
    bad = _duck_msg(['a', 'b'], t, pos, vel)
    bad.points[1].velocities = []
    with pytest.raises(ValueError, match='some points'):
        joint_trajectory_to_arrays(bad)
    bad = _duck_msg(['a', 'b'], t, pos)
    bad.points[0].positions = [1.0]
    with pytest.raises(ValueError, match='positions'):
        joint_trajectory_to_arrays(bad)


def test_empty_trajectory():
    names, t, pos, vel = joint_trajectory_to_arrays(SimpleNamespace(joint_names=['a'], points=[]))
    assert names == ['a'] and t.shape == (0,) and pos.shape == (0, 1) and vel is None


def test_rclpy_round_trip_and_rosbags_decoding():
    pytest.importorskip('trajectory_msgs')
    rng = np.random.default_rng(0)
    t = np.array([0.0, 0.1, 0.2, 1.35])
    pos = rng.normal(size=(4, 3))
    vel = rng.normal(size=(4, 3))
    msg = arrays_to_joint_trajectory(['j1', 'j2', 'j3'], t, pos, vel, stamp=12.25, frame_id='w')
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 250_000_000)
    assert msg.header.frame_id == 'w'
    names, tt, pp, vv = joint_trajectory_to_arrays(msg)
    assert names == ['j1', 'j2', 'j3']
    np.testing.assert_allclose(tt, t, atol=1e-9)
    np.testing.assert_array_equal(pp, pos)
    np.testing.assert_array_equal(vv, vel)

    # A message as rosbags decodes it from a bag (numpy arrays instead of lists).
    rosbags_typesys = pytest.importorskip('rosbags.typesys')
    types = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_KILTED).types
    bag_points = [types['trajectory_msgs/msg/JointTrajectoryPoint'](
        positions=pos[i], velocities=vel[i], accelerations=np.zeros(0), effort=np.zeros(0),
        time_from_start=types['builtin_interfaces/msg/Duration'](
            sec=p.time_from_start.sec, nanosec=p.time_from_start.nanosec))
        for i, p in enumerate(msg.points)]
    decoded = types['trajectory_msgs/msg/JointTrajectory'](
        header=types['std_msgs/msg/Header'](
            stamp=types['builtin_interfaces/msg/Time'](sec=12, nanosec=250_000_000), frame_id='w'),
        joint_names=names, points=bag_points)
    names2, tt2, pp2, vv2 = joint_trajectory_to_arrays(decoded)
    assert names2 == names
    np.testing.assert_array_equal(tt2, tt)
    np.testing.assert_array_equal(pp2, pos)
    np.testing.assert_array_equal(vv2, vel)


def test_stamp_variants_and_shape_check():
    pytest.importorskip('trajectory_msgs')
    from builtin_interfaces.msg import Time
    msg = arrays_to_joint_trajectory(['a'], [0.0], [[1.0]])
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)
    assert list(msg.points[0].velocities) == []
    msg = arrays_to_joint_trajectory(['a'], [0.0], [[1.0]], stamp=Time(sec=3, nanosec=4))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 4)
    with pytest.raises(ValueError):
        arrays_to_joint_trajectory(['a', 'b'], [0.0], [[1.0]])
