"""EndEffectorSpace: joint positions <-> tip pose vectors of one arm (forward kinematics of the
URDF, inverse kinematics along a chunk inside the limits), and what a checkpoint stores of it."""
import numpy as np
import pytest

from dp_common.ee_space import EE_COLUMNS, EndEffectorSpace
from dp_common.rotations import rot6d_to_matrix

# A 6-joint arm (UR-like axes: z, y, y, y, z, y) with offsets, so every pose component is reachable
UR_LIKE = """<robot name="six">
  <link name="base"/><link name="l1"/><link name="l2"/><link name="l3"/><link name="l4"/>
  <link name="l5"/><link name="l6"/><link name="tool"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <origin xyz="0 0 0.15"/><axis xyz="0 0 1"/><limit lower="-3" upper="3" velocity="2"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/>
    <origin xyz="0 0.1 0"/><axis xyz="0 1 0"/><limit lower="-3" upper="3" velocity="2"/></joint>
  <joint name="j3" type="revolute"><parent link="l2"/><child link="l3"/>
    <origin xyz="0.4 0 0"/><axis xyz="0 1 0"/><limit lower="-2.8" upper="2.8" velocity="2"/></joint>
  <joint name="j4" type="revolute"><parent link="l3"/><child link="l4"/>
    <origin xyz="0.35 0 0"/><axis xyz="0 1 0"/><limit lower="-3" upper="3" velocity="2"/></joint>
  <joint name="j5" type="revolute"><parent link="l4"/><child link="l5"/>
    <origin xyz="0 0.1 0"/><axis xyz="0 0 1"/><limit lower="-3" upper="3" velocity="2"/></joint>
  <joint name="j6" type="revolute"><parent link="l5"/><child link="l6"/>
    <origin xyz="0 0 -0.1"/><axis xyz="0 1 0"/><limit lower="-3" upper="3" velocity="2"/></joint>
  <joint name="tool_fixed" type="fixed"><parent link="l6"/><child link="tool"/>
    <origin xyz="0 0.08 0" rpy="0.3 0 0"/></joint>
</robot>"""


def test_vectors_are_the_tip_pose_in_the_root_frame():
    sp = EndEffectorSpace(UR_LIKE, 'tool')
    assert sp.root_frame == 'base' and sp.dim == 9 and len(EE_COLUMNS) == 9
    q = np.array([0.3, -0.7, 1.1, -0.4, 0.5, 0.2])
    T = sp.chain.pose(q)
    v = sp.vectors(q)
    assert np.allclose(v[:3], T[:3, 3]) and np.allclose(rot6d_to_matrix(v[3:]), T[:3, :3])
    # batches, and the columns in any joint order the caller names
    qs = np.stack([q, q * 0.5])
    assert sp.vectors(qs).shape == (2, 9)
    rev = EndEffectorSpace(UR_LIKE, 'tool', ['j6', 'j5', 'j4', 'j3', 'j2', 'j1'])
    assert np.allclose(rev.vectors(q[::-1]), v)


def test_joint_path_reaches_a_smooth_path_inside_the_limits():
    sp = EndEffectorSpace(UR_LIKE, 'tool')
    t = np.linspace(0, 1, 16)[:, None]
    q_path = np.array([0.3, -0.7, 1.1, -0.4, 0.5, 0.2]) + t * np.array([0.4, 0.3, -0.5, 0.2, -0.3, 0.6])
    ik = sp.joint_path(sp.vectors(q_path), q_path[0] + 0.05)
    pe, oe = ik.worst()
    assert pe < 1e-4 and oe < 1e-3
    assert np.allclose(sp.vectors(ik.q), sp.vectors(q_path), atol=1e-4)
    assert np.all(ik.q >= sp.lower) and np.all(ik.q <= sp.upper)


def test_restricted_limits_are_kept_and_an_unreachable_pose_says_how_far():
    sp = EndEffectorSpace(UR_LIKE, 'tool')
    q = np.array([0.3, -0.7, 1.1, -0.4, 0.5, 0.2])
    target = sp.vectors(q)
    sp.restrict_limits([-3, -3, -0.5, -3, -3, -3], [3, 3, 0.5, 3, 3, 3])     # j3 must stay small
    ik = sp.joint_path(target[None], q * 0.0)
    assert -0.5 - 1e-12 <= ik.q[0, 2] <= 0.5 + 1e-12
    assert ik.position_error_m[0] > 0.01                                   # it cannot get there
    far = target.copy()
    far[:3] = [3.0, 0.0, 0.0]                                              # out of reach
    assert EndEffectorSpace(UR_LIKE, 'tool').joint_path(far[None], q).worst()[0] > 1.5


def test_stored_and_rebuilt():
    sp = EndEffectorSpace(UR_LIKE, 'tool', ['j1', 'j2', 'j3', 'j4', 'j5', 'j6'])
    d = sp.to_dict()
    assert d['kind'] == 'ee_pose' and d['tip_link'] == 'tool' and d['root_frame'] == 'base'
    assert d['columns'] == list(EE_COLUMNS) and d['urdf'].startswith('<robot')
    again = EndEffectorSpace.from_dict(d)
    q = np.linspace(-0.5, 0.5, 6)
    assert np.allclose(again.vectors(q), sp.vectors(q))
    with pytest.raises(ValueError, match='not an end-effector space'):
        EndEffectorSpace.from_dict({'kind': 'joint'})


def test_wrong_joints_or_link_are_refused_with_names():
    with pytest.raises(ValueError, match=r"moves joints \['j1'"):
        EndEffectorSpace(UR_LIKE, 'tool', ['j1', 'j2', 'j3'])
    with pytest.raises(ValueError, match="'nowhere'"):
        EndEffectorSpace(UR_LIKE, 'nowhere')
    with pytest.raises(ValueError, match='URDF file not found'):
        EndEffectorSpace('/no/such/file.urdf', 'tool')
    sp = EndEffectorSpace(UR_LIKE, 'tool')
    with pytest.raises(ValueError, match='3 joint values for 6 joints'):
        sp.vectors(np.zeros(3))


def test_joint_order_other_than_the_chains_everywhere():
    """The caller's joint order (a driver's) in IK and limits too, not only FK."""
    names = ['j6', 'j5', 'j4', 'j3', 'j2', 'j1']
    sp = EndEffectorSpace(UR_LIKE, 'tool', names)
    q = np.array([0.2, 0.5, -0.4, 1.1, -0.7, 0.3])            # j6..j1
    ik = sp.joint_path(sp.vectors(q)[None], q + 0.03)
    assert np.allclose(ik.q[0], q, atol=1e-4)
    sp.restrict_limits([-3, -3, -3, -0.5, -3, -3], [3, 3, 3, 0.5, 3, 3])   # j3, 4th here
    assert sp.lower[3] == -0.5 and sp.upper[3] == 0.5 and sp.chain.upper[2] == 0.5
    ik = sp.joint_path(sp.vectors(q)[None], np.zeros(6))
    assert -0.5 - 1e-12 <= ik.q[0, 3] <= 0.5 + 1e-12


def test_give_up_stops_at_the_first_pose_too_far():
    sp = EndEffectorSpace(UR_LIKE, 'tool')
    q = np.array([0.3, -0.7, 1.1, -0.4, 0.5, 0.2])
    v = np.tile(sp.vectors(q), (5, 1))
    v[2, :3] = [3.0, 0.0, 0.0]
    ik = sp.joint_path(v, q, give_up=(0.005, 0.05))
    assert len(ik.q) == 3 and ik.position_error_m[-1] > 1.0
