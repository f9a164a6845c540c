"""JointTrajectoryFollower: joint_trajectory_controller's acceptance rules, per distribution, and
its timing and interpolation.

Cases and expected outcomes are taken from ros2_controllers' own tests of
joint_trajectory_controller (the Kilted-era sources in ../shared/ros2_control_src/ros2_controllers:
test/test_trajectory_controller.cpp, test/test_trajectory.cpp), each cited by name. Their fixture
sets allow_nonzero_velocity_at_trajectory_end: true unless a test sets it
(test_trajectory_controller_utils.hpp, SetUpTrajectoryController); the cases do the same.
"""
import numpy as np
import pytest

from dp_sim.jtc import DISTROS, JointTrajectoryFollower

NAMES = ['joint1', 'joint2', 'joint3']


def make(q0=(0.0, 0.0, 0.0), **kw):
    return JointTrajectoryFollower(NAMES, q0, **kw)


def test_holds_initial_positions_without_trajectory():
    f = make((0.1, 0.2, 0.3))
    q, qd = f.sample(5.0)
    assert np.allclose(q, [0.1, 0.2, 0.3]) and np.allclose(qd, 0)
    assert not f.active


def test_distribution_defaults():
    # joint_trajectory_controller_parameters.yaml: allow_nonzero_velocity_at_trajectory_end
    # default true on humble, false on jazzy and kilted; interpolate_from_desired_state (humble:
    # open_loop_control) false everywhere.
    assert make(distro='humble').allow_nonzero_velocity_at_trajectory_end
    for distro in ('jazzy', 'kilted'):
        assert not make(distro=distro).allow_nonzero_velocity_at_trajectory_end
    assert not any(make(distro=d).interpolate_from_desired_state for d in DISTROS)
    with pytest.raises(ValueError):
        make(distro='rolling_2019')


def test_sample_trajectory_positions():
    # test_trajectory.cpp TestTrajectory.sample_trajectory_positions: point before the trajectory
    # 0.0 at t0; points 1.0, 2.0, 3.0 at 1, 2, 3 s, positions only: linear segments from the point
    # before, then between the points, then the last point held.
    f = make((0.0, 0.0, 0.0))
    f.set_trajectory(10.0, NAMES, 0.0, [1.0, 2.0, 3.0], [[1.0] * 3, [2.0] * 3, [3.0] * 3])
    q, qd = f.sample(10.0, measured_q=[0.0] * 3)
    assert np.allclose(q, 0.0) and np.allclose(qd, 1.0)   # velocity of the first segment
    for dt, expected in ((0.5, 0.5), (1.0, 1.0), (1.5, 1.5), (2.5, 2.5), (3.0, 3.0),
                         (3.125, 3.0), (30.0, 3.0)):
        assert np.allclose(f.sample(10.0 + dt)[0], expected), dt


GOOD = dict(joint_names=NAMES, stamp_s=0.0, t_from_start_s=[0.25],
            positions=[[1.0, 2.0, 3.0]], velocities=[[-1.0, -2.0, -3.0]])


@pytest.mark.parametrize('change', [
    dict(joint_names=['bad_name']),                                   # incompatible joint names
    dict(t_from_start_s=[], positions=np.zeros((0, 3)), velocities=np.zeros((0, 3))),  # empty
    dict(positions=[[]]),                                             # no position data
    dict(positions=[[1.0, 2.0]]),                                     # too few positions
    dict(positions=[[1.0, 2.0, 3.0, 4.0]]),                           # too many positions
    dict(velocities=[[1.0, 2.0]]),                                    # too few velocities
    dict(t_from_start_s=[0.25, 0.25], positions=[[1.0, 2.0, 3.0]] * 2,
         velocities=[[-1.0, -2.0, -3.0]] * 2),                        # non-strictly increasing
    dict(stamp_s=1e-9),                                               # end time in the past
], ids=['bad_name', 'empty', 'no_positions', 'few_positions', 'many_positions',
        'few_velocities', 'non_increasing', 'ends_in_the_past'])
def test_invalid_message(change):
    # test_trajectory_controller.cpp invalid_message (allow_partial_joints_goal false): the good
    # message is valid, each of these changes makes it invalid; a rejected message leaves the
    # current trajectory going.
    f = make(allow_nonzero_velocity_at_trajectory_end=True)
    f.set_trajectory(now_s=100.0, **GOOD)
    f.sample(100.0, [0.0] * 3)
    with pytest.raises(ValueError):
        f.set_trajectory(now_s=100.0, **{**GOOD, **change})
    assert np.allclose(f.sample(101.0)[0], [1.0, 2.0, 3.0])


def test_invalid_message_end_time_in_the_future_is_valid():
    # invalid_message, last case: stamped now with a point 10 s ahead: valid.
    f = make(allow_nonzero_velocity_at_trajectory_end=True)
    f.set_trajectory(now_s=100.0, **{**GOOD, 'stamp_s': 100.0, 't_from_start_s': [10.0]})
    assert f.active


@pytest.mark.parametrize('distro,accepted', [('humble', True), ('jazzy', False),
                                             ('kilted', False)])
def test_nonzero_velocity_at_trajectory_end(distro, accepted):
    # test_trajectory_controller.cpp
    # expect_invalid_when_message_with_nonzero_end_velocity_and_when_param_false: a single point
    # with velocities (-1, -2, -3) is invalid with the parameter false, the default since Jazzy.
    f = make(distro=distro)
    if accepted:
        f.set_trajectory(now_s=0.0, **GOOD)
    else:
        with pytest.raises(ValueError, match='Velocity of last trajectory point of joint joint1 '
                                             'is not zero'):
            f.set_trajectory(now_s=0.0, **GOOD)
    # Ending at rest (what follower_node's braking tail does) is valid on every distribution.
    f.set_trajectory(now_s=0.0, **{**GOOD, 't_from_start_s': [0.25, 0.5],
                                   'positions': [[1.0, 2.0, 3.0]] * 2,
                                   'velocities': [[-1.0, -2.0, -3.0], [0.0, 0.0, 0.0]]})


def test_ignore_old_trajectory():
    # test_trajectory_controller.cpp test_ignore_old_trajectory: old = (2, 3, 4) then (4, 5, 6),
    # 0.5 s apart, stamp 0; a new trajectory stamped so that it ends before now is ignored: the
    # robot ends at the old trajectory's last point.
    f = make()
    f.set_trajectory(0.0, NAMES, 0.0, [0.5, 1.0], [[2.0, 3.0, 4.0], [4.0, 5.0, 6.0]])
    f.sample(0.0, [0.0] * 3)
    assert np.allclose(f.sample(0.5)[0], [2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match='ends in the past'):
        f.set_trajectory(0.5, NAMES, 0.5 - 0.5 - 0.1, [0.5], [[-1.0, -2.0, -3.0]])
    assert np.allclose(f.sample(1.5)[0], [4.0, 5.0, 6.0])


def test_jumbled_joint_order():
    # test_trajectory_controller.cpp test_jumbled_joint_order: names in the order (2, 3, 1) with
    # positions (2, 3, 1) command joint i to position i.
    f = make()
    f.set_trajectory(0.0, ['joint2', 'joint3', 'joint1'], 0.0, [0.25], [[2.0, 3.0, 1.0]])
    f.sample(0.0, [0.0] * 3)
    assert np.allclose(f.sample(1.0)[0], [1.0, 2.0, 3.0])


def test_partial_joint_list_not_allowed():
    # test_trajectory_controller.cpp test_partial_joint_list_not_allowed: two of three joints,
    # allow_partial_joints_goal false: ignored, the commands stay at their initial values.
    f = make((0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="don't match the controller joints"):
        f.set_trajectory(0.0, ['joint2', 'joint1'], 0.0, [0.25], [[2.0, 1.0]])
    assert np.allclose(f.sample(1.0)[0], [0.1, 0.2, 0.3])


def test_new_trajectory_starts_from_the_measured_state_by_default():
    # update(): the point before a new trajectory is the state read from the state interfaces
    # (interpolate_from_desired_state false, the default): where the arm lags the last setpoint,
    # the setpoint goes back to the arm (a sawtooth when trajectories stream at 50 Hz).
    f = make()
    f.set_trajectory(0.0, NAMES, 0.0, [1.0], [[1.0, 0, 0]])
    f.sample(0.0, [0.0] * 3)
    assert np.allclose(f.sample(0.5)[0], [0.5, 0, 0])
    f.set_trajectory(0.5, NAMES, 0.0, [0.5], [[1.0, 0, 0]])
    q, _ = f.sample(0.5, measured_q=[0.4, 0, 0])          # the arm 0.1 rad behind
    assert np.allclose(q, [0.4, 0, 0])
    # ... with interpolate_from_desired_state, from the last setpoint: continuous.
    g = make(interpolate_from_desired_state=True)
    g.set_trajectory(0.0, NAMES, 0.0, [1.0], [[1.0, 0, 0]])
    g.sample(0.0, [0.0] * 3)
    g.sample(0.5, [0.4, 0, 0])
    g.set_trajectory(0.5, NAMES, 0.0, [0.5], [[1.0, 0, 0]])
    q, _ = g.sample(0.5, measured_q=[0.4, 0, 0])
    assert np.allclose(q, [0.5, 0, 0])


def test_zero_stamp_starts_at_the_first_update_nonzero_stamp_is_absolute():
    # Trajectory::sample: stamp 0 -> the trajectory starts at its first sample; otherwise points
    # are due at stamp + time_from_start, and a late trajectory is entered mid-way.
    f = make()
    f.set_trajectory(10.0, NAMES, 0.0, [1.0], [[1.0, 0, 0]])
    f.sample(10.2, [0.0] * 3)                              # read 0.2 s after it was received
    assert np.allclose(f.sample(10.7)[0], [0.5, 0, 0])
    g = make()
    # Stamp 9.0: points due at 9.5 (past), 10.5 and 11.5; first sampled at 10.0.
    g.set_trajectory(10.0, NAMES, 9.0, [0.5, 1.5, 2.5], [[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]])
    assert np.allclose(g.sample(10.0, [0.0] * 3)[0], [1.5, 0, 0])
    assert np.allclose(g.sample(11.0)[0], [2.5, 0, 0])
    assert np.allclose(g.sample(12.0)[0], [3.0, 0, 0])


def test_cubic_with_velocities_matches_positions_and_velocities_at_points():
    f = make()
    pos = [[0.5, 0, 0], [1.0, 0, 0]]
    vel = [[1.0, 0, 0], [0.0, 0, 0]]
    f.set_trajectory(0.0, NAMES, 0.0, [0.0, 1.0], pos, vel)
    q, qd = f.sample(0.0, [0.0] * 3)
    assert np.allclose(q, pos[0]) and np.allclose(qd, vel[0])
    q, qd = f.sample(1.0 - 1e-9)
    assert np.allclose(q, pos[1], atol=1e-6) and np.allclose(qd, vel[1], atol=1e-6)
    # Cubic, not linear: the midpoint lies above the chord because it starts with velocity 1.
    assert f.sample(0.5)[0][0] > 0.75 + 0.05


def test_reset_drops_the_trajectory():
    f = make()
    f.set_trajectory(0.0, NAMES, 0.0, [2.0], [[2.0, 0, 0]])
    f.reset([0.3, 0.2, 0.1])
    assert not f.active and np.allclose(f.sample(1.0)[0], [0.3, 0.2, 0.1])


@pytest.mark.parametrize('distro,ahead', [('humble', 0.0), ('jazzy', 0.01), ('kilted', 0.01)])
def test_update_writes_the_point_one_period_ahead_since_jazzy(distro, ahead):
    # joint_trajectory_controller.cpp update(): the point before a new trajectory is (time, the
    # state read at time); Jazzy and Kilted write command_next_, sampled at traj_time_ +
    # update_period_, Humble the desired state at time. 1 rad in 1 s from rest, linear.
    f = make(distro=distro)
    f.set_trajectory(0.0, NAMES, 0.0, [1.0], [[1.0, 0, 0]])
    q, _ = f.update(5.0, 0.01, measured_q=[0.0] * 3)
    assert np.allclose(q, [ahead, 0, 0])
    q, _ = f.update(5.5, 0.01)
    assert np.allclose(q, [0.5 + ahead, 0, 0])


@pytest.mark.parametrize('factor', [1.0, 0.5, 0.0])
def test_speed_scaling_advances_trajectory_time_at_the_factor(factor):
    # joint_trajectory_controller.cpp update(): traj_time_ = time at the first sample of a new
    # trajectory, then traj_time_ += period * scaling_factor_ (factor 0 is valid and stops the
    # trajectory: setting_scaling_factor_works_correctly publishes 0.0 and expects it). The
    # setpoint is sampled at traj_time_ + update_period_ (Jazzy+), the look-ahead unscaled.
    f = make(distro='jazzy')
    f.scaling_factor = factor
    f.set_trajectory(0.0, NAMES, 0.0, [1.0], [[1.0, 0, 0]])     # 1 rad in 1 s, linear
    q, _ = f.update(5.0, 0.01, measured_q=[0.0] * 3)
    assert np.allclose(q, [0.01, 0, 0])
    for k in range(1, 51):
        q, _ = f.update(5.0 + 0.01 * k, 0.01)
    assert np.allclose(q, [0.5 * factor + 0.01, 0, 0])
    # A new trajectory starts its time at its first sample again.
    f.set_trajectory(5.5, NAMES, 0.0, [1.0], [[0.0, 0, 0]])
    q, _ = f.update(5.51, 0.01, measured_q=[0.5, 0, 0])
    assert np.allclose(q, [0.5 - 0.5 * 0.01, 0, 0])
