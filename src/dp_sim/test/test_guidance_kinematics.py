"""dp_policy.guidance's differentiable FK against MuJoCo's kinematics of the embedded arm (the MJCF
is kept consistent with the same URDF by test_description.py), and its collision spheres against
MuJoCo's collision geoms of the arm."""
import mujoco
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dp_policy.guidance.kinematics import TorchKinematics
from dp_sim.env import ArmTaskEnv, default_urdf_path

FK = TorchKinematics.from_urdf(default_urdf_path(), tip='tool0')
ENV = ArmTaskEnv()


@settings(max_examples=50, deadline=None)
@given(st.tuples(*(st.floats(-2.5, 2.5) for _ in range(3))))
def test_torch_fk_matches_mujoco_to_1e_5_m(q):
    m, d = ENV.model, ENV.data
    d.qpos[ENV._qadr] = q
    mujoco.mj_kinematics(m, d)
    poses = FK.link_poses(torch.tensor(q, dtype=torch.float64)).numpy()
    for link in ('link1', 'link2', 'link3'):
        i = FK.chain.link_names.index(link)
        np.testing.assert_allclose(poses[i, :3, 3], d.body(link).xpos, atol=1e-5)
        np.testing.assert_allclose(poses[i, :3, :3], d.body(link).xmat.reshape(3, 3), atol=1e-5)
    tip = FK.position(torch.tensor(q, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(tip, d.site('tool0').xpos, atol=1e-5)


def test_fk_is_differentiable_and_batched():
    q = torch.zeros(2, 4, 3, dtype=torch.float64, requires_grad=True)
    pts, radii = FK.collision_points(q)
    assert pts.shape == (2, 4, radii.shape[0], 3)
    pts[..., 2].sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


@settings(max_examples=20, deadline=None)
@given(st.tuples(*(st.floats(-2.0, 2.0) for _ in range(3))))
def test_collision_spheres_contain_the_stylus_tip_and_link_ends(q):
    """Points on MuJoCo's arm geoms (stylus tip, link box ends) lie inside the spheres' union."""
    m, d = ENV.model, ENV.data
    d.qpos[ENV._qadr] = q
    mujoco.mj_kinematics(m, d)
    pts, radii = FK.collision_points(torch.tensor(q, dtype=torch.float64))
    pts, radii = pts.numpy(), radii.numpy()
    probes = [d.site('tool0').xpos]
    for link in ('link1', 'link2', 'link3'):
        probes.append(d.body(link).xpos)
    for p in probes:
        assert np.min(np.linalg.norm(pts - p, axis=1) - radii) <= 1e-9
