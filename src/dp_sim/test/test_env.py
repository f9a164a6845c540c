"""ArmTaskEnv: physics tracks position targets within limits, rendering, the task's bookkeeping."""
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault('MUJOCO_GL', 'egl')
from dp_sim.env import JOINT_NAMES, ArmTaskEnv, TaskConfig, planar_fk, planar_ik  # noqa: E402

RED = np.array([255, 13, 13])


@pytest.fixture(scope='module')
def env():
    e = ArmTaskEnv(seed=0)
    yield e
    e.close()


def red_centroid(img: np.ndarray):
    """(row, col) centroid of the target's red pixels, None if none."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    mask = (r > 150) & (g < 80) & (b < 80)
    if mask.sum() == 0:
        return None
    rows, cols = np.nonzero(mask)
    return rows.mean(), cols.mean()


def test_position_targets_are_tracked(env):
    env.reset(seed=1)
    goal = np.array([-0.3, 1.2, -0.7])
    env.set_position_targets(goal)
    env.step(1.5)
    assert np.allclose(env.q, goal, atol=0.01), env.q
    assert np.allclose(env.qd, 0.0, atol=0.02)
    # The measured tip is the forward kinematics of the measured joints.
    assert np.allclose(env.tip[:2], env.forward_kinematics(env.q), atol=1e-6)


def test_targets_are_clipped_to_joint_limits(env):
    env.reset(seed=2)
    applied = env.set_position_targets([10.0, -10.0, 0.0])
    assert applied[0] == pytest.approx(env.upper[0]) and applied[1] == pytest.approx(env.lower[1])
    env.step(3.0)
    assert np.all(env.q <= env.upper + 0.02) and np.all(env.q >= env.lower - 0.02)
    assert np.all(np.abs(env.effort) <= env.effort_limit + 1e-9)


@pytest.mark.parametrize('bad', [[0.0, 0.0], [0.0, np.nan, 0.0], [np.inf, 0.0, 0.0]])
def test_bad_targets_raise(env, bad):
    before = env.position_targets
    with pytest.raises(ValueError):
        env.set_position_targets(bad)
    assert np.array_equal(env.position_targets, before)


def test_time_never_goes_back_and_episodes_count(env):
    t0 = env.time
    env.step(0.1)
    ep = env.episode
    env.reset(seed=3)
    assert env.time >= t0 + 0.1 - 1e-9
    assert env.episode == ep + 1
    st = env.status()
    assert st.episode_time_s == pytest.approx(0.0) and not st.success and not st.done
    assert st.side == '' and not st.obstacle_contact


def test_targets_vary_within_the_configured_box():
    cfg = TaskConfig()
    e = ArmTaskEnv(cfg, seed=5)
    targets = np.array([e.reset()[:2] for _ in range(30)])
    assert np.all(targets[:, 0] >= cfg.target_x_range_m[0]) and np.all(targets[:, 0] <= cfg.target_x_range_m[1])
    assert np.all(targets[:, 1] >= cfg.target_y_range_m[0]) and np.all(targets[:, 1] <= cfg.target_y_range_m[1])
    assert targets[:, 1].std() > 0.03  # really varied
    # The same seed gives the same target.
    assert np.allclose(e.reset(seed=9), e.reset(seed=9))


def test_render_shape_and_determinism():
    a, b = ArmTaskEnv(seed=0), ArmTaskEnv(seed=0)
    try:
        a.reset(seed=11)
        b.reset(seed=11)
        ia, ib = a.render(), b.render()
        assert ia.shape == (96, 96, 3) and ia.dtype == np.uint8
        assert np.array_equal(ia, ib)
        a.reset(seed=12)
        assert not np.array_equal(a.render(), ib)
    finally:
        a.close()
        b.close()


def test_target_is_visible_where_the_camera_model_says(env):
    """The red disk's pixel centroid follows the target: image up = +x, image left = +y."""
    fx, fy, cx, cy = env.camera_intrinsics()
    height = 0.65 - 0.002  # camera above the disk's top face
    cam_x = 0.22
    seen = []
    for xy in [(0.40, -0.09), (0.40, 0.09), (0.43, 0.0)]:
        env.reset(seed=1, target_xy=np.array(xy))
        c = red_centroid(env.render())
        assert c is not None, f'target at {xy} not visible'
        row_expected = cy - fy * (xy[0] - cam_x) / height
        col_expected = cx - fx * xy[1] / height
        assert abs(c[0] - row_expected) < 1.5 and abs(c[1] - col_expected) < 1.5, (xy, c)
        seen.append(c)
    assert seen[1][1] < seen[0][1] - 20   # +y moved the disk left in the image
    assert seen[2][0] < seen[0][0]        # +x moved it up


def test_ik_fk_round_trip():
    L = (0.20, 0.16, 0.10)
    pts = np.array([[0.21, 0.0], [0.26, 0.085], [0.36, -0.085], [0.44, 0.1], [0.39, -0.1]])
    q = planar_ik(pts, L)
    assert np.allclose(planar_fk(q, L), pts, atol=1e-9)
    with pytest.raises(ValueError):
        planar_ik(np.array([0.6, 0.0]), L)


def test_contact_with_the_post_is_detected_and_fails_the_episode(env):
    env.reset(seed=4, target_xy=np.array([0.31, 0.0]))   # target inside the post
    q_post = planar_ik(np.array([0.31, 0.0]), env.link_lengths_m)
    for _ in range(100):
        env.set_position_targets(q_post)
        env.step(0.02)
    st = env.status()
    assert st.obstacle_contact
    assert not st.success
    assert st.distance_m > env.post_radius_m  # the post stopped the stylus
    assert st.min_clearance_m <= 0.0          # touching: the geoms' distance is 0 or a penetration


def test_min_clearance_is_the_stylus_to_post_distance(env):
    """Away from the post the nearest arm geom is the stylus (the links pass above the post's
    top): the clearance is the distance between the two vertical axes minus both radii."""
    env.reset(seed=4, target_xy=np.array([0.40, 0.0]))
    assert env.status().min_clearance_m > 0.03
    xy = np.array([0.26, 0.07])
    q = planar_ik(xy, env.link_lengths_m)
    for _ in range(50):
        env.set_position_targets(q)
        env.step(0.02)
    st = env.status()
    tip = env.tip[:2]
    expected = np.linalg.norm(tip - env.post_xy) - env.post_radius_m - env.stylus_radius_m
    assert not st.obstacle_contact
    assert st.min_clearance_m <= expected + 1e-6                   # the smallest of the episode
    env.step(0.02)                                                 # at rest: the current one
    assert min(st.min_clearance_m, expected) == pytest.approx(env.status().min_clearance_m,
                                                              abs=1e-4)


def test_task_option_moves_enlarges_and_adds_posts():
    """The shifted-obstacle task (never in the demonstrations): the post moved and enlarged, a
    second post; both stop the stylus and count as contact, the camera sees both."""
    plain = ArmTaskEnv(seed=0)
    cfg = TaskConfig(post_xy_m=(0.33, 0.03), post_radius_m=0.035, second_post_xy_m=(0.40, -0.09))
    env = ArmTaskEnv(cfg, seed=0)
    assert env.obstacles() == [('post', (0.33, 0.03, 0.03), 0.035, 0.03),
                               ('post2', (0.40, -0.09, 0.03), 0.025, 0.03)]
    assert plain.obstacles() == [('post', (0.31, 0.0, 0.03), 0.025, 0.03)]
    assert np.allclose(env.post_xy, (0.33, 0.03)) and env.post_radius_m == 0.035
    # the second post is in the image (blue pixels where the plain scene has none)
    blue = [np.sum((im[..., 2] > 200) & (im[..., 0] < 80)) for im in (plain.render(),
                                                                       env.render())]
    assert blue[1] > blue[0] * 1.5
    for xy in ((0.40, -0.09), (0.33, 0.03)):
        env.reset(seed=4, target_xy=np.array(xy))        # target inside a post
        q = planar_ik(np.array(xy), env.link_lengths_m)
        for _ in range(100):
            env.set_position_targets(q)
            env.step(0.02)
        st = env.status()
        assert st.obstacle_contact, xy
        assert st.distance_m > 0.02, xy                 # the post stopped the stylus
    with pytest.raises(ValueError, match='post_radius_m'):
        TaskConfig(post_radius_m=0.5)
    with pytest.raises(ValueError, match='second_post_xy_m'):
        TaskConfig(second_post_xy_m=(0.4,))


def test_success_needs_reaching_and_stopping(env):
    target = np.array([0.42, 0.05])
    env.reset(seed=5, target_xy=target)
    # Go around the post on the left via two waypoints, then to the target.
    for xy in ([0.25, 0.10], [0.37, 0.10], target):
        q = planar_ik(np.array(xy), env.link_lengths_m)
        for _ in range(60):
            env.set_position_targets(q)
            env.step(0.02)
    st = env.status()
    assert st.success and not st.obstacle_contact
    assert st.side == 'left'
    assert st.distance_m < 0.01


def test_core_modules_import_without_rclpy():
    code = ('import sys; import dp_sim.env, dp_sim.jtc, dp_sim.expert; '
            "assert 'rclpy' not in sys.modules, 'rclpy imported'")
    subprocess.run([sys.executable, '-c', code], check=True, env=dict(os.environ))


def test_joint_names():
    assert JOINT_NAMES == ('joint1', 'joint2', 'joint3')
