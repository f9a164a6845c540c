"""dp_common.robot_mask against MuJoCo: the pixels the URDF's moving links cover, through the
URDF's camera frame and the camera's pinhole intrinsics, are the pixels MuJoCo's segmentation
render gives to the arm's geoms, on both embedded arms."""
import mujoco
import numpy as np
import pytest

from dp_common.robot_mask import RobotMask
from dp_sim.env import ArmTaskEnv, TaskConfig, model_path

SIZE = 240          # finer than the policy's 96 x 96, so that edges weigh little


def _arm_pixels(env, q):
    """MuJoCo's segmentation of the overhead camera: (H, W) bool, the arm's moving geoms."""
    env.data.qpos[env._qadr] = q
    mujoco.mj_forward(env.model, env.data)
    r = mujoco.Renderer(env.model, SIZE, SIZE)
    try:
        r.enable_segmentation_rendering()
        r.update_scene(env.data, camera='overhead')
        seg = r.render()
    finally:
        r.close()
    geom = seg[..., 0]
    is_geom = seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)
    return is_geom & np.isin(geom, env._arm_geoms)


@pytest.mark.parametrize('mjcf,urdf', [('arm.mjcf.xml', 'arm.urdf'), ('arm4.mjcf.xml', 'arm4.urdf')])
def test_mask_is_mujocos_segmentation(mjcf, urdf):
    env = ArmTaskEnv(TaskConfig(image_height=SIZE, image_width=SIZE), model_path=model_path(mjcf),
                     seed=0)
    try:
        K = env.camera_intrinsics()
        exact = RobotMask(model_path(urdf), env.joint_names, 'camera_optical_frame', K,
                          (SIZE, SIZE), margin_m=0.0)
        grown = RobotMask(model_path(urdf), env.joint_names, 'camera_optical_frame', K,
                          (SIZE, SIZE))
        assert {'link1', 'tool0'} <= set(exact.links) and 'table' not in exact.links
        rng = np.random.default_rng(1)
        for q in [env.start_q] + [rng.uniform(env.lower * 0.8, env.upper * 0.8) for _ in range(4)]:
            truth = _arm_pixels(env, q)
            assert truth.sum() > 500
            mine = exact.pixels(q)
            iou = (truth & mine).sum() / (truth | mine).sum()
            assert iou > 0.85, iou       # PIL fills edge pixels: slightly larger
            # grown by 5 mm, the mask covers every pixel of the arm
            assert (truth & ~grown.pixels(q)).sum() == 0
    finally:
        env.close()


def test_paint_and_refusals():
    env = ArmTaskEnv(TaskConfig(), seed=0)
    try:
        K = env.camera_intrinsics()
        m = RobotMask(model_path('arm.urdf'), env.joint_names, 'camera_optical_frame', K, (96, 96))
        img = env.render()
        out = m.paint(img, env.start_q, fill=(1, 2, 3))
        px = m.pixels(env.start_q)
        assert (out[px] == (1, 2, 3)).all() and (out[~px] == img[~px]).all()
        with pytest.raises(ValueError, match='mask size'):
            m.paint(img[:50], env.start_q)
        with pytest.raises(ValueError, match='not in the URDF'):
            RobotMask(model_path('arm.urdf'), ['joint9'], 'camera_optical_frame', K, (96, 96))
        with pytest.raises(ValueError, match='camera frame'):
            RobotMask(model_path('arm.urdf'), env.joint_names, 'nope', K, (96, 96))
        mesh = model_path('arm.urdf').read_text().replace(
            '<box size="0.16 0.035 0.02"/>', '<mesh filename="link2.stl"/>', 1)
        with pytest.raises(ValueError, match='mesh'):
            RobotMask(mesh, env.joint_names, 'camera_optical_frame', K, (96, 96))
        sizeless = model_path('arm.urdf').read_text().replace(
            '<box size="0.16 0.035 0.02"/>', '<box/>', 1)
        with pytest.raises(ValueError, match='size'):
            RobotMask(sizeless, env.joint_names, 'camera_optical_frame', K, (96, 96))
    finally:
        env.close()


def _episode(env, qs, name):
    from dp_policy.data.episode import Episode
    images = []
    for q in qs:
        env.data.qpos[env._qadr] = q
        mujoco.mj_forward(env.model, env.data)
        images.append(env.render())
    qs = np.asarray(qs, dtype=np.float32)
    return Episode(name=name, t=np.arange(len(qs)) * 0.1, state=qs, action=qs,
                   images={'overhead': np.stack(images)})


def test_training_images_are_painted_and_the_checkpoint_says_so(tmp_path):
    """dp_train --mask-robot: every frame painted with the joint state of its step, the set's
    meta and then the checkpoint (and the policy's meta) carry the camera's mask settings."""
    from dp_policy.checkpoint import load_checkpoint
    from dp_policy.config import preset
    from dp_policy.data.dataset import DatasetConfig
    from dp_policy.data.episode import EpisodeSetMeta
    from dp_policy.data.spaces import mask_robot, to_end_effector
    from dp_policy.policy import DiffusionPolicy
    from dp_policy.training import trainer
    from dp_policy.training.cli import _mask
    from dp_common.robot_mask import mask_spec

    env = ArmTaskEnv(TaskConfig(), seed=0)
    try:
        fx, fy, cx, cy = env.camera_intrinsics()
        urdf = str(model_path('arm.urdf'))
        rng = np.random.default_rng(0)
        eps = [_episode(env, [env.start_q + rng.normal(0, 0.2, 3) for _ in range(6)], f'e{i}')
               for i in range(2)]
    finally:
        env.close()
    meta = EpisodeSetMeta(['joint1', 'joint2', 'joint3'], ['overhead'], (96, 96), 0.1, 'fp')
    spec = mask_spec('camera_optical_frame', (fx, fy, cx, cy), (96, 96), 0.01)
    masked, mmeta = mask_robot(eps, meta, urdf, {'overhead': spec})
    paint = RobotMask(urdf, meta.joint_names, 'camera_optical_frame', (fx, fy, cx, cy), (96, 96),
                      0.01)
    for ep, mep in zip(eps, masked):
        for k in range(len(ep)):
            assert np.array_equal(mep.images['overhead'][k],
                                  paint.paint(ep.images['overhead'][k], ep.state[k]))
        assert not np.array_equal(mep.images['overhead'], ep.images['overhead'])
    assert mmeta.robot_mask == {'overhead': spec} and meta.robot_mask is None
    ee_eps, ee_meta = to_end_effector(masked, mmeta, urdf, 'tool0')
    with pytest.raises(ValueError, match='before'):
        mask_robot(ee_eps, ee_meta, urdf, {'overhead': spec})
    c = preset('tiny')
    c.train = type(c.train)(**{**trainer.to_dict(c.train), 'steps': 2, 'batch_size': 4,
                               'warmup_steps': 1, 'checkpoint_every': 2, 'log_every': 1})
    out = trainer.train(ee_eps, ee_meta, c.model, c.vision, c.scheduler, c.train, tmp_path / 'run',
                        progress=False)
    assert load_checkpoint(out).robot_mask == {'overhead': spec}
    assert DiffusionPolicy.from_checkpoint(out, backend='torch').meta.robot_mask == {'overhead': spec}
    # the dataset config and the command line
    cams = {'overhead': '/camera/image_raw'}
    with pytest.raises(ValueError, match='needs urdf'):
        DatasetConfig(joint_names=['joint1'], cameras=cams, robot_mask={'overhead': spec})
    with pytest.raises(ValueError, match='not among'):
        DatasetConfig(joint_names=['joint1'], cameras=cams, urdf=urdf, robot_mask={'wrist': spec})
    with pytest.raises(ValueError, match='must map'):
        DatasetConfig(joint_names=['joint1'], cameras=cams, urdf=urdf, robot_mask={'overhead': 3})
    with pytest.raises(ValueError, match='K'):
        DatasetConfig(joint_names=['joint1'], cameras=cams, urdf=urdf,
                      robot_mask={'overhead': dict(spec, K=[0, 1, 2, 3])})
    assert _mask('overhead=camera_optical_frame:110.4,110.4,48,48:96x96') == (
        'overhead', {'frame': 'camera_optical_frame', 'K': [110.4, 110.4, 48.0, 48.0],
                     'size': [96, 96]})
