"""End-effector action and observation spaces in training: joint episodes become tip pose vectors
(forward kinematics of the recording arm), the checkpoint carries the space, the policy samples
in it, and what does not fit is refused with a message."""
from pathlib import Path

import numpy as np
import pytest
import torch

import dp_policy.training.trainer as trainer
from dp_common.ee_space import EndEffectorSpace
from dp_policy.checkpoint import CheckpointError, create_untrained_checkpoint, load_checkpoint
from dp_policy.config import preset
from dp_policy.data.dataset import DatasetConfig, _cache_key
from dp_policy.data.episode import Episode, EpisodeSetMeta
from dp_policy.data.spaces import to_end_effector
from dp_policy.policy import DiffusionPolicy

# the embedded arm's URDF, from the source tree (dp_sim is not a dependency of dp_policy)
ARM_URDF = Path(__file__).resolve().parents[2] / 'dp_sim' / 'description' / 'arm.urdf'


def default_urdf_path():
    return ARM_URDF

torch.set_num_threads(1)
JOINTS = ['joint1', 'joint2', 'joint3']


def arm_episodes(n=4, T=30, hw=(16, 16)):
    rng = np.random.default_rng(0)
    eps = []
    for i in range(n):
        t = np.arange(T) * 0.1
        q = np.stack([-0.9 + 0.3 * np.sin(t + i), 2.5 - 0.5 * t / t[-1], -1.6 + 0.2 * np.cos(t)],
                     axis=1).astype(np.float32)
        eps.append(Episode(name=f'ep{i}', t=t, state=q, action=np.roll(q, -1, axis=0),
                           images={'cam': rng.integers(0, 255, (T, *hw, 3), dtype=np.uint8)}))
    return eps, EpisodeSetMeta(JOINTS, ['cam'], hw, 0.1, 'fp-ee')


def test_episodes_become_tip_poses_of_the_recording_arm():
    eps, meta = arm_episodes()
    ee_eps, ee_meta = to_end_effector(eps, meta, str(default_urdf_path()), 'tool0')
    sp = EndEffectorSpace(default_urdf_path(), 'tool0', JOINTS)
    assert ee_meta.dim == 9 and ee_meta.space_kind == 'ee_pose' and meta.dim == 3
    assert ee_meta.action_space['joint_names'] == JOINTS
    for a, b in zip(eps, ee_eps):
        assert np.allclose(b.state, sp.vectors(a.state), atol=1e-6)
        assert np.allclose(b.action, sp.vectors(a.action), atol=1e-6)
        assert b.images is a.images and np.array_equal(b.t, a.t)
    assert np.allclose(ee_eps[0].state[:, 2], 0.02, atol=1e-6)      # the stylus tip's height
    with pytest.raises(ValueError, match='already'):
        to_end_effector(ee_eps, ee_meta, str(default_urdf_path()), 'tool0')
    with pytest.raises(ValueError, match='moves joints'):
        to_end_effector(eps, EpisodeSetMeta(['a', 'b', 'c'], ['cam'], (16, 16), 0.1),
                        str(default_urdf_path()), 'tool0')


def test_dataset_config_needs_the_urdf_and_keeps_the_decode_cache(tmp_path):
    with pytest.raises(ValueError, match='needs urdf'):
        DatasetConfig(joint_names=JOINTS, action_space='ee_pose')
    with pytest.raises(ValueError, match='action_space must be one of'):
        DatasetConfig(joint_names=JOINTS, action_space='cartesian')
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    joint = DatasetConfig(joint_names=JOINTS)
    ee = DatasetConfig(joint_names=JOINTS, action_space='ee_pose', urdf=str(default_urdf_path()))
    assert _cache_key(bag, joint) == _cache_key(bag, ee)      # decoded once, transformed after


def test_trained_checkpoint_carries_the_space_and_samples_poses(tmp_path):
    eps, meta = arm_episodes()
    ee_eps, ee_meta = to_end_effector(eps, meta, str(default_urdf_path()), 'tool0')
    c = preset('tiny')
    c.train = type(c.train)(**{**trainer.to_dict(c.train), 'steps': 4, 'batch_size': 8,
                               'warmup_steps': 1, 'checkpoint_every': 4, 'log_every': 2})
    path = trainer.train(ee_eps, ee_meta, c.model, c.vision, c.scheduler, c.train, tmp_path / 'run',
                         progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt.state_dim == ckpt.action_dim == 9
    assert ckpt.action_space['kind'] == 'ee_pose' and ckpt.action_space['tip_link'] == 'tool0'
    assert ckpt.joint_names == JOINTS
    policy = DiffusionPolicy.from_checkpoint(path, backend='torch')
    assert policy.meta.space_kind == 'ee_pose'
    n = policy.meta.n_obs_steps
    out = policy.predict(np.repeat(ee_eps[0].state[None, :n], 2, axis=0),
                         {'cam': np.repeat(ee_eps[0].images['cam'][None, :n], 2, axis=0)})
    assert out.actions.shape == (2, policy.meta.horizon, 9)
    # the tip height never moved in the demonstrations: every sample keeps it exactly
    assert np.allclose(out.actions[..., 2], ee_eps[0].state[0, 2], atol=1e-6)
    with pytest.raises(ValueError, match='joint-space actions'):
        policy.set_guidance(object(), None)


def test_checkpoint_with_a_broken_space_is_refused(tmp_path):
    sp = EndEffectorSpace(default_urdf_path(), 'tool0', JOINTS).to_dict()
    good = create_untrained_checkpoint(tmp_path / 'ee.ckpt', JOINTS, preset='tiny', action_space=sp)
    assert load_checkpoint(good).action_space['root_frame'] == 'world'
    d = torch.load(good, weights_only=True)
    d['action_space'] = dict(sp, tip_link='nowhere')
    torch.save(d, tmp_path / 'bad.ckpt')
    with pytest.raises(CheckpointError, match='invalid action_space'):
        load_checkpoint(tmp_path / 'bad.ckpt')
    d['action_space'] = dict(sp, columns=['x', 'y'])
    torch.save(d, tmp_path / 'bad2.ckpt')
    with pytest.raises(CheckpointError, match='end-effector space of 9 columns'):
        load_checkpoint(tmp_path / 'bad2.ckpt')


def test_end_effector_normaliser_ranges_the_position_and_leaves_the_rotation():
    """Diffusion Policy's normalisation of absolute end-effector actions: position by range,
    6D rotation identity; constant columns pinned."""
    from dp_policy.data.spaces import fit_normalizer
    eps, meta = arm_episodes()
    ee_eps, ee_meta = to_end_effector(eps, meta, str(default_urdf_path()), 'tool0')
    data = np.concatenate([e.action for e in ee_eps])
    n = fit_normalizer(data, ee_meta.action_space)
    assert np.allclose(n.normalize(data)[:, :2].min(0), -1, atol=1e-5)        # x, y by range
    assert np.allclose(n.normalize(data)[:, :2].max(0), 1, atol=1e-5)
    assert np.allclose(n.normalize(data)[:, [3, 4, 6, 7]], data[:, [3, 4, 6, 7]])  # rotation as is
    assert n.degenerate.tolist() == [False, False, True, False, False, True, False, False, True]
    assert np.allclose(n.unnormalize(np.full((1, 9), 0.3))[0, [2, 5, 8]], data[0, [2, 5, 8]])
    joint = fit_normalizer(np.concatenate([e.action for e in eps]), None)
    assert np.allclose(joint.normalize(np.concatenate([e.action for e in eps])).max(0), 1, atol=1e-5)
