"""The second embedded arm (arm4.urdf / arm4.mjcf.xml): what the cross-embodiment evaluation
relies on. Its forward kinematics from the URDF is MuJoCo's, its start pose puts the tip where
the first arm's starts, pointing the same way, and the first arm's tip poses over its workspace
are poses it reaches inside its limits (inverse kinematics, warm-started along demonstrations)."""
import numpy as np
import pytest

from dp_common.ee_space import EndEffectorSpace
from dp_sim.env import ArmTaskEnv, TaskConfig, default_urdf_path, model_path

ARM4_URDF = model_path('arm4.urdf')


@pytest.fixture(scope='module')
def env4():
    env = ArmTaskEnv(TaskConfig(), model_path=model_path('arm4.mjcf.xml'), seed=3)
    yield env
    env.close()


def test_joints_come_from_the_model(env4):
    assert env4.joint_names == ('joint1', 'joint2', 'joint3', 'joint4')
    assert ArmTaskEnv(seed=0).joint_names == ('joint1', 'joint2', 'joint3')


def test_urdf_forward_kinematics_is_mujocos(env4):
    space = EndEffectorSpace(ARM4_URDF, 'tool0', list(env4.joint_names))
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.uniform(env4.lower * 0.9, env4.upper * 0.9)
        env4.set_position_targets(q)
        env4.step(1.5)
        T = space.chain.pose(env4.q)
        assert np.allclose(T[:3, 3], env4.tip, atol=1e-6)
        R_mj = env4.data.site_xmat[env4.model.site('tool0').id].reshape(3, 3)
        assert np.allclose(T[:3, :3], R_mj, atol=1e-6)


def test_start_pose_is_the_first_arms(env4):
    first = EndEffectorSpace(default_urdf_path(), 'tool0')
    second = EndEffectorSpace(ARM4_URDF, 'tool0')
    v1 = first.vectors(ArmTaskEnv(seed=0).start_q)
    assert np.allclose(ArmTaskEnv(seed=0).start_q, [-0.924, 2.561, -1.636])
    v2 = second.vectors(env4.start_q)
    assert np.allclose(v1, v2, atol=1e-3)


def test_first_arms_workspace_is_reachable():
    """Tip poses of the first arm along straight reaches to the targets' corners (its own IK
    from the demonstrator) are reached by the second within 1 mm / 0.01 rad, inside its limits."""
    from dp_sim.expert import LINK_LENGTHS_M
    from dp_sim.env import planar_ik
    first = EndEffectorSpace(default_urdf_path(), 'tool0')
    second = EndEffectorSpace(ARM4_URDF, 'tool0')
    env = ArmTaskEnv(TaskConfig(), model_path=model_path('arm4.mjcf.xml'), seed=0)
    q_start = env.start_q
    env.close()
    for target in [(0.39, 0.10), (0.44, 0.10), (0.39, -0.10), (0.44, -0.10)]:
        for side in (0.08, -0.08):        # pass the post (0.31, 0) on the left, on the right
            xy = np.concatenate([np.linspace([0.21, 0.0], [0.31, side], 10),
                                 np.linspace([0.31, side], target, 10)])
            q1 = planar_ik(xy, LINK_LENGTHS_M)
            ik = second.joint_path(first.vectors(q1), q_start)
            pe, oe = ik.worst()
            assert pe < 1e-3 and oe < 1e-2, (target, side, pe, oe)
            assert np.all(ik.q >= second.lower - 1e-12) and np.all(ik.q <= second.upper + 1e-12)
