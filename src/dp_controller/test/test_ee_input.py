"""End-effector chunks into the follower: dp_msgs/ActionChunk poses -> joint positions by inverse
kinematics of the arm's URDF (ee_input.EndEffectorInput) and the reasons a chunk is refused
(follower_node taking them on its action_chunk_topic: test_node.py)."""
import numpy as np
import pytest

from dp_common.ee_space import EndEffectorSpace
from dp_controller.ee_input import EeRejected, EndEffectorInput
from dp_sim.env import default_urdf_path, model_path

JOINTS = ['joint1', 'joint2', 'joint3']
URDF = str(default_urdf_path())


def ee_chunk(vectors, stamp=0.0, dt=0.1, frame='world', link='tool0', first=1):
    """An ActionChunk of tip pose vectors (N, 9), as policy_node publishes it."""
    from dp_policy_node.messages import ee_chunk_message
    msg = ee_chunk_message(vectors, int(round(stamp * 1e9)), dt, first, frame, link)
    msg.n_action_steps = 8
    return msg


def reach_path(n=16):
    """Joint positions of the embedded arm moving out from its start pose."""
    s = np.linspace(0, 1, n)[:, None]
    return np.array([-0.924, 2.561, -1.636]) + s * np.array([0.5, -1.2, 0.6])


def test_poses_become_the_joint_positions_that_reach_them():
    sp = EndEffectorSpace(URDF, 'tool0', JOINTS)
    q = reach_path()
    ee = EndEffectorInput(URDF, 'tool0', JOINTS)
    t, pos = ee.joint_chunk(ee_chunk(sp.vectors(q)), q[0] + 0.02)
    assert np.allclose(t, (np.arange(16) - 1) * 0.1)
    assert np.allclose(pos, q, atol=1e-4)
    assert ee.worst_position_error_m < 1e-5 and ee.last_solve_s > 0


def test_the_arm_it_drives_can_be_another():
    """The first arm's tip poses drive the 4-joint arm (its own URDF and joints)."""
    first = EndEffectorSpace(URDF, 'tool0', JOINTS)
    joints4 = JOINTS + ['joint4']
    ee = EndEffectorInput(str(model_path('arm4.urdf')), 'tool0', joints4,
                          lower=[-2.45, -2.65, -2.65, -2.65], upper=[2.45, 2.65, 2.65, 2.65])
    _, pos = ee.joint_chunk(ee_chunk(first.vectors(reach_path())),
                            np.array([-1.3678, 1.7554, 1.3912, -1.7779]))
    assert pos.shape == (16, 4)
    second = EndEffectorSpace(str(model_path('arm4.urdf')), 'tool0', joints4)
    assert np.allclose(second.vectors(pos)[:, :3], first.vectors(reach_path())[:, :3], atol=1e-4)
    assert np.all(pos <= 2.65 + 1e-12) and np.all(pos >= -2.65 - 1e-12)


def test_chunks_it_cannot_follow_are_refused_with_a_reason():
    sp = EndEffectorSpace(URDF, 'tool0', JOINTS)
    v = sp.vectors(reach_path())
    q0 = reach_path()[0]
    ee = EndEffectorInput(URDF, 'tool0', JOINTS)

    def reason(msg, ee=ee):
        with pytest.raises(EeRejected) as info:
            ee.joint_chunk(msg, q0)
        return info.value.reason, info.value.detail

    far = v.copy()
    far[10, :2] = [0.9, 0.0]                                   # beyond the 0.46 m reach
    r, detail = reason(ee_chunk(far))
    assert r == 'ik_unreachable' and 'pose 10 (0.900, 0.000' in detail
    assert reason(ee_chunk(v, frame='base_link'))[0] == 'ee_frame'
    assert reason(ee_chunk(v, link='link3'))[0] == 'ee_frame'
    bad = ee_chunk(v)
    bad.poses[3].orientation.w = 5.0                            # not a unit quaternion
    assert reason(bad)[0] == 'bad_shape'
    bad = ee_chunk(v)
    bad.poses[2].position.x = float('nan')
    assert reason(bad)[0] == 'bad_shape'
    bad = ee_chunk(v)
    bad.poses.pop()
    assert reason(bad)[0] == 'bad_shape'
    assert reason(ee_chunk(v), EndEffectorInput(None, 'tool0', JOINTS))[0] == 'ee_not_configured'
    # a joint limit narrower than the path: the solution stays inside, too far from the poses
    narrow = EndEffectorInput(URDF, 'tool0', JOINTS, lower=[-3, 2.2, -3], upper=[3, 2.7, 3])
    assert reason(ee_chunk(v), narrow)[0] == 'ik_unreachable'
