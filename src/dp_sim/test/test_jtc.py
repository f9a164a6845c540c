"""JointTrajectoryFollower: joint_trajectory_controller's timing and interpolation semantics."""
import numpy as np
import pytest

from dp_sim.jtc import JointTrajectoryFollower

NAMES = ['joint1', 'joint2', 'joint3']


def make(q0=(0.0, 0.0, 0.0)):
    return JointTrajectoryFollower(NAMES, q0)


def test_holds_initial_positions_without_trajectory():
    f = make((0.1, 0.2, 0.3))
    q, qd = f.sample(5.0)
    assert np.allclose(q, [0.1, 0.2, 0.3]) and np.allclose(qd, 0)
    assert not f.active


def test_zero_stamp_starts_now_and_interpolates_linearly_from_current_setpoint():
    f = make()
    f.set_trajectory(now_s=10.0, joint_names=NAMES, stamp_s=0.0,
                     t_from_start_s=[1.0, 2.0], positions=[[1.0, 0, 0], [1.0, 2.0, 0]])
    assert np.allclose(f.sample(10.0)[0], [0, 0, 0])
    assert np.allclose(f.sample(10.5)[0], [0.5, 0, 0])      # splice segment: now -> first point
    assert np.allclose(f.sample(11.0)[0], [1.0, 0, 0])
    q, qd = f.sample(11.25)
    assert np.allclose(q, [1.0, 0.5, 0]) and np.allclose(qd, [0, 2.0, 0])
    # After the last point: hold it.
    q, qd = f.sample(30.0)
    assert np.allclose(q, [1.0, 2.0, 0]) and np.allclose(qd, 0)


def test_nonzero_stamp_is_absolute_and_past_points_are_skipped():
    f = make()
    # Stamp 9.0: points due at 9.5 (past), 10.5 and 11.5; received at 10.0.
    f.set_trajectory(10.0, NAMES, 9.0, [0.5, 1.5, 2.5],
                     [[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]])
    assert np.allclose(f.sample(10.0)[0], [1.5, 0, 0])     # between the points due at 9.5 and 10.5
    assert np.allclose(f.sample(11.0)[0], [2.5, 0, 0])
    assert np.allclose(f.sample(12.0)[0], [3.0, 0, 0])


def test_new_trajectory_replaces_the_old_one_continuously():
    f = make()
    f.set_trajectory(0.0, NAMES, 0.0, [2.0], [[2.0, 0, 0]])
    q_mid = f.sample(1.0)[0]
    assert np.allclose(q_mid, [1.0, 0, 0])
    f.set_trajectory(1.0, NAMES, 0.0, [1.0], [[-1.0, 0, 0]])
    assert np.allclose(f.sample(1.0)[0], q_mid)              # no jump at the splice
    assert np.allclose(f.sample(1.5)[0], [0.0, 0, 0])
    assert np.allclose(f.sample(3.0)[0], [-1.0, 0, 0])      # old goal (2.0) never reached


def test_cubic_with_velocities_matches_positions_and_velocities_at_points():
    f = make()
    pos = [[0.5, 0, 0], [1.0, 0, 0]]
    vel = [[1.0, 0, 0], [0.0, 0, 0]]
    f.set_trajectory(0.0, NAMES, 0.0, [0.0, 1.0], pos, vel)
    q, qd = f.sample(0.0)
    assert np.allclose(q, pos[0]) and np.allclose(qd, vel[0])
    q, qd = f.sample(1.0 - 1e-9)
    assert np.allclose(q, pos[1], atol=1e-6) and np.allclose(qd, vel[1], atol=1e-6)
    # Cubic, not linear: the midpoint lies above the chord because it starts with velocity 1.
    assert f.sample(0.5)[0][0] > 0.75 + 0.05


def test_joints_are_matched_by_name():
    f = make()
    f.set_trajectory(0.0, ['joint3', 'joint1', 'joint2'], 0.0, [1.0], [[3.0, 1.0, 2.0]])
    assert np.allclose(f.sample(2.0)[0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize('kwargs', [
    dict(joint_names=['joint1', 'joint2'], t_from_start_s=[1.0], positions=[[0, 0]]),
    dict(joint_names=['joint1', 'joint2', 'elbow'], t_from_start_s=[1.0], positions=[[0, 0, 0]]),
    dict(joint_names=NAMES, t_from_start_s=[1.0, 1.0], positions=[[0, 0, 0], [1, 1, 1]]),
    dict(joint_names=NAMES, t_from_start_s=[1.0], positions=[[0, np.nan, 0]]),
    dict(joint_names=NAMES, t_from_start_s=[1.0], positions=[[0, 0, 0, 0]]),
])
def test_invalid_trajectories_are_rejected_and_the_current_one_goes_on(kwargs):
    f = make()
    f.set_trajectory(0.0, NAMES, 0.0, [2.0], [[2.0, 0, 0]])
    with pytest.raises(ValueError):
        f.set_trajectory(now_s=1.0, stamp_s=0.0, **kwargs)
    assert np.allclose(f.sample(2.0)[0], [2.0, 0, 0])


def test_trajectory_ending_in_the_past_is_rejected():
    f = make()
    with pytest.raises(ValueError, match='past'):
        f.set_trajectory(10.0, NAMES, 5.0, [1.0, 2.0], [[1, 1, 1], [2, 2, 2]])


def test_empty_trajectory_cancels_and_holds_the_current_setpoint():
    f = make()
    f.set_trajectory(0.0, NAMES, 0.0, [2.0], [[2.0, 0, 0]])
    f.set_trajectory(1.0, NAMES, 0.0, [], np.zeros((0, 3)))
    assert not f.active
    assert np.allclose(f.sample(5.0)[0], [1.0, 0, 0])
