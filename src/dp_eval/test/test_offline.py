"""Offline replay of synthetic bags through a tiny random-init checkpoint."""
import shutil

import numpy as np
import pytest

from dp_eval import bagio, offline, synthetic

FAST = offline.OfflineConfig(latency_probe=3, batch_size=16, backend='torch', num_samples=4,
                              warmup=False)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_offline_replay_measures_every_step(bags, tiny_ckpt, storage):
    res = offline.run_offline(tiny_ckpt, bags[storage], cfg=FAST, progress=False)
    m = res['metrics']
    assert not res['partial'] and res['errors'] == []
    # 3 s of bag at dt 0.1 -> ~30 grid steps per bag, minus the first n_obs - 1
    assert m['steps'] == sum(b['steps'] for b in res['bags']) >= 50
    H = res['policy']['horizon']
    assert len(m['error']['rmse_per_step']) == H
    assert set(m['error']['rmse_per_joint']) == {'joint1', 'joint2', 'joint3'}
    # the truth of step 0 always exists; near the bag end later steps are masked
    assert m['error']['count_per_step'][0] == m['steps'] > m['error']['count_per_step'][-1]
    assert m['mode']['modes_demonstrated'] == 2
    assert m['latency']['n'] == 3 and m['latency']['mean_s'] > 0
    assert m['jerk']['demo_rms'] > 0 and np.isfinite(m['jerk']['pred_rms'])
    assert res['traces'] and res['traces'][0]['chunks']


def test_perfect_predictor_has_zero_error(bags, tiny_ckpt):
    """A policy that returns the demonstrated future must score 0: the truth alignment is right."""
    from dp_policy.policy import DiffusionPolicy, PolicyOutput
    real = DiffusionPolicy.from_checkpoint(tiny_ckpt)
    meta = real.meta
    t0 = 1000.0   # synthetic bag start

    class Oracle:
        name = 'oracle'

        def __init__(self):
            self.meta = meta

        def reset(self):
            pass

        def predict(self, state, images, stamps, robot_ids):
            f = meta.n_obs_steps - 1
            t = np.asarray(stamps)[:, None] + (np.arange(meta.horizon) - f) * meta.dt_s
            acts = synthetic.command_at(np.maximum(t - t0, 0.0), 1, 3)        # (B, H, 3)
            return PolicyOutput(actions=acts, samples=acts[:, None], chosen=np.zeros(len(t), int),
                                first_action_index=f, latency_s=1e-4, backend='oracle',
                                num_inference_steps=0, scheduler='none')

    res = offline.run_offline(Oracle(), bags['sqlite3'][:1], cfg=FAST, progress=False)
    # commands are a zero-order hold on the grid: the error is at most one grid step of motion
    assert res['metrics']['error']['mae'] < 0.02
    assert res['metrics']['jerk']['ratio'] == pytest.approx(1.0, rel=0.5)


def test_missing_topic_is_named(bags, tiny_ckpt):
    from dp_policy.data.dataset import DatasetConfig
    cfg = DatasetConfig(joint_names=['joint1', 'joint2', 'joint3'],
                        cameras={'camera': '/camera/image_raw'}, command_topic='/teleop/commands')
    with pytest.raises(bagio.MissingTopicError, match="'/teleop/commands' is missing"):
        offline.run_offline(tiny_ckpt, bags['sqlite3'][:1], dataset_cfg=cfg, progress=False)


def test_camera_and_joint_mismatch_are_named(bags, tiny_ckpt, tmp_path):
    from dp_policy.checkpoint import create_untrained_checkpoint
    from dp_policy.data.dataset import DatasetConfig
    wrist = create_untrained_checkpoint(tmp_path / 'wrist.ckpt', ['joint1', 'joint2', 'joint3'],
                                        ['wrist'], (24, 32), preset='tiny')
    with pytest.raises(offline.CheckpointMismatchError, match="camera 'wrist'.*'/wrist/image_raw'"):
        offline.run_offline(wrist, bags['mcap'][:1], progress=False)
    elbow = create_untrained_checkpoint(tmp_path / 'elbow.ckpt', ['joint1', 'elbow', 'joint3'],
                                        ['camera'], (24, 32), preset='tiny')
    with pytest.raises(offline.CheckpointMismatchError, match=r"joints \['elbow'\]"):
        offline.run_offline(elbow, bags['mcap'][:1], progress=False)
    cfg = DatasetConfig(joint_names=['joint1', 'joint2', 'joint3'], cameras={})
    with pytest.raises(offline.CheckpointMismatchError, match='cameras'):
        offline.run_offline(tiny_ckpt, bags['mcap'][:1], dataset_cfg=cfg, progress=False)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_corrupt_bag_keeps_the_results_so_far(bags, tiny_ckpt, tmp_path, storage):
    good = bags[storage][0]
    bad = synthetic.corrupt_bag(bags[storage][1], tmp_path / 'zz_bad', 0.5, 'truncate')
    res = offline.run_offline(tiny_ckpt, [good, bad], cfg=FAST, progress=False)
    assert res['partial'] is True
    assert any(str(bad) in e and 'corrupt' in e for e in res['errors'])
    by_path = {b['path']: b for b in res['bags']}
    assert by_path[str(good)]['steps'] > 0 and by_path[str(good)]['error'] is None
    assert by_path[str(bad)]['error']
    # the readable first part of the damaged bag is evaluated too
    assert by_path[str(bad)]['salvaged_messages'] > 50
    assert 'evaluated the' in by_path[str(bad)]['error']
    assert 0 < by_path[str(bad)]['steps'] < by_path[str(good)]['steps']
    assert res['metrics']['steps'] == by_path[str(good)]['steps'] + by_path[str(bad)]['steps']


def test_joint_trajectory_commands_and_configurable_topics(tiny_ckpt, tmp_path):
    """Demonstrator commands as JointTrajectory on a custom topic, joint states elsewhere."""
    from dp_policy.data.dataset import DatasetConfig
    spec = synthetic.SyntheticSpec(command='trajectory', joint_topic='/arm/joint_states',
                                   command_topic='/teleop/joint_trajectory', duration_s=2.0)
    bag = synthetic.write_demo_bag(tmp_path / 'traj', spec, 'mcap')
    cfg = DatasetConfig(joint_names=['joint1', 'joint2', 'joint3'],
                        cameras={'camera': '/camera/image_raw'},
                        joint_states_topic='/arm/joint_states',
                        command_topic='/teleop/joint_trajectory')
    res = offline.run_offline(tiny_ckpt, [bag], dataset_cfg=cfg, cfg=FAST, progress=False)
    assert not res['partial'] and res['metrics']['steps'] >= 15
    assert res['dataset']['command_topic'] == '/teleop/joint_trajectory'


def test_camera_topics_default_to_the_training_topics():
    """A checkpoint from dp_train carries its dataset config: its camera topics are the default."""
    from types import SimpleNamespace
    meta = SimpleNamespace(joint_names=['j1'], camera_names=['overhead', 'wrist'], dt_s=0.1,
                           image_hw=(96, 96),
                           extra={'dataset_config': {'cameras': {'overhead': '/camera/image_raw'}}})
    assert offline.default_camera_topics(meta) == {'overhead': '/camera/image_raw',
                                                   'wrist': '/wrist/image_raw'}
    cfg = offline.dataset_config_for(meta)
    assert cfg.cameras == {'overhead': '/camera/image_raw', 'wrist': '/wrist/image_raw'}
    assert offline.dataset_config_for(meta, {'overhead': '/o', 'wrist': '/w'}).cameras == \
        {'overhead': '/o', 'wrist': '/w'}
    meta.extra = {}
    assert offline.default_camera_topics(meta) == {'overhead': '/overhead/image_raw',
                                                   'wrist': '/wrist/image_raw'}


def test_end_effector_checkpoint_is_scored_on_tip_poses_and_reported(bags, tmp_path):
    """dp_eval offline on an end-effector checkpoint: the bag's joint states and commands become
    tip poses by the checkpoint's URDF, errors are per pose column (x, y, z, rot6d), and the
    report's plots are drawn with those names."""
    from dp_common.ee_space import EE_COLUMNS, EndEffectorSpace
    from dp_policy.checkpoint import create_untrained_checkpoint
    from dp_sim.env import default_urdf_path

    from dp_eval import report
    space = EndEffectorSpace(default_urdf_path(), 'tool0', ['joint1', 'joint2', 'joint3'])
    ckpt = create_untrained_checkpoint(tmp_path / 'ee.ckpt', space.joint_names, ['camera'],
                                       (24, 32), preset='tiny', action_min=-0.5, action_max=0.5,
                                       action_space=space.to_dict())
    res = offline.run_offline(ckpt, bags['sqlite3'], cfg=FAST, progress=False)
    assert res['errors'] == [] and res['metrics']['steps'] >= 50
    assert list(res['metrics']['error']['rmse_per_joint']) == list(EE_COLUMNS)
    assert res['policy']['action_space'] == 'ee_pose'
    recorded = np.asarray(res['traces'][0]['recorded'])
    assert recorded.shape[1] == 9 and np.all(np.abs(recorded[:, :3]) < 0.6)   # metres, not rad
    paths = report.write_report([res], tmp_path / 'rep')
    assert paths['html'].is_file()
    assert (tmp_path / 'rep' / 'plots' / 'examples_0.png').is_file()
