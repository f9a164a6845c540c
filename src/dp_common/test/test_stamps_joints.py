"""Tests of dp_common.stamps and dp_common.joints, and that dp_common's modules import ROS-free."""
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from dp_common.joints import JointIndexer
from dp_common.stamps import is_zero_stamp, ns_to_stamp, sec_to_ns, sec_to_stamp, stamp_to_ns, \
    stamp_to_sec


def test_modules_import_without_rclpy():
    code = ('import sys, dp_common.images, dp_common.joints, dp_common.stamps; '
            'bad = [m for m in ("rclpy", "sensor_msgs", "builtin_interfaces", "std_msgs") '
            'if m in sys.modules]; assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_stamps_duck_rclpy_rosbags():
    assert stamp_to_sec(SimpleNamespace(sec=3, nanosec=250_000_000)) == 3.25
    assert stamp_to_ns(SimpleNamespace(sec=1_700_000_000, nanosec=1)) == 1_700_000_000_000_000_001
    assert stamp_to_ns(SimpleNamespace(nanoseconds=42)) == 42
    assert sec_to_ns(1.5) == 1_500_000_000
    with pytest.raises(ValueError):
        sec_to_ns(float('inf'))
    with pytest.raises(TypeError):
        stamp_to_ns(3.0)
    from rosbags.typesys import Stores, get_typestore
    Time = get_typestore(Stores.ROS2_KILTED).types['builtin_interfaces/msg/Time']
    assert stamp_to_sec(Time(sec=2, nanosec=500_000_000)) == 2.5
    assert is_zero_stamp(Time(sec=0, nanosec=0)) and not is_zero_stamp(Time(sec=0, nanosec=1))


def test_stamps_to_messages():
    pytest.importorskip('builtin_interfaces.msg')
    t = sec_to_stamp(-0.25)
    assert (t.sec, t.nanosec) == (-1, 750_000_000)
    assert stamp_to_sec(t) == -0.25
    t = ns_to_stamp(1_700_000_000_123_456_789)
    assert (t.sec, t.nanosec) == (1_700_000_000, 123_456_789)
    from rclpy.time import Time
    assert stamp_to_ns(Time(nanoseconds=5_000_000_001)) == 5_000_000_001


def test_joint_indexer_matches_by_name():
    ji = JointIndexer(['shoulder', 'elbow', 'wrist'])
    q, reason = ji.positions(['wrist', 'gripper', 'shoulder', 'elbow'], [3.0, 9.0, 1.0, 2.0])
    assert reason == '' and q.tolist() == [1.0, 2.0, 3.0]
    v, reason = ji.velocities(['wrist', 'gripper', 'shoulder', 'elbow'], [0.3, 0.9, 0.1, 0.2])
    assert reason == '' and v.tolist() == [0.1, 0.2, 0.3]
    assert ji.velocities(['wrist', 'shoulder', 'elbow'], []) == (None, 'no_velocities')
    msg = SimpleNamespace(name=['elbow', 'wrist', 'shoulder'], position=np.array([2.0, 3.0, 1.0]))
    assert ji.from_joint_state(msg)[0].tolist() == [1.0, 2.0, 3.0]


def test_joint_indexer_reasons():
    ji = JointIndexer(['shoulder', 'elbow'])
    assert ji.positions(['shoulder'], [1.0]) == (None, 'missing_joint:elbow')
    assert ji.positions(['x'], [1.0]) == (None, 'missing_joint:shoulder,elbow')
    q, reason = ji.positions(['elbow', 'shoulder'], [1.0])
    assert q is None and reason == 'length_mismatch:names=2,positions=1'
    q, reason = ji.positions(['elbow', 'shoulder'], [float('nan'), 1.0])
    assert q is None and reason == 'nan_position:elbow'
    # the cached layout is rebuilt when the message layout changes
    assert ji.positions(['shoulder', 'elbow'], [1.0, 2.0])[0].tolist() == [1.0, 2.0]
    assert ji.positions(['elbow', 'shoulder'], [1.0, 2.0])[0].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match='duplicates'):
        JointIndexer(['a', 'a'])
    with pytest.raises(ValueError, match='empty'):
        JointIndexer([])


def test_a_joint_named_twice_is_refused_not_guessed():
    ix = JointIndexer(['a', 'b'])
    q, reason = ix.positions(['a', 'b', 'a'], [1.0, 2.0, 3.0])
    assert q is None and reason == 'duplicate_joint:a'
    q, reason = ix.positions(['a', 'a'], [1.0, 3.0])       # ambiguous before incomplete
    assert q is None and reason == 'duplicate_joint:a'
    q, reason = ix.positions(['x', 'x', 'a', 'b'], [0.0, 0.0, 1.0, 2.0])   # not ours: fine
    assert reason == '' and q.tolist() == [1.0, 2.0]
