"""Checkpoints: plain weights_only dict, round trip, and a clear CheckpointError for every defect."""
import os

import pytest
import torch

from dp_policy.checkpoint import (FORMAT_VERSION, CheckpointError, create_untrained_checkpoint,
                                       load_checkpoint)

JOINTS = ['shoulder', 'elbow', 'wrist']


@pytest.fixture(scope='module')
def ckpt_path(tmp_path_factory):
    return create_untrained_checkpoint(tmp_path_factory.mktemp('ck') / 'policy.ckpt', JOINTS, ['top'], (48, 64),
                                       preset='tiny', seed=3)


def test_untrained_checkpoint_is_a_plain_dict_with_everything_a_node_needs(ckpt_path):
    d = torch.load(ckpt_path, weights_only=True)
    assert d['format_version'] == FORMAT_VERSION
    assert d['joint_names'] == JOINTS and d['camera_names'] == ['top'] and d['image_hw'] == [48, 64]
    assert (d['n_obs_steps'], d['horizon'], d['n_action_steps']) == (2, 16, 8)
    assert d['normalizer']['action'] == {'min': [-3.14159] * 3, 'max': [3.14159] * 3}
    assert all(isinstance(v, torch.Tensor) for v in d['state_dict'].values())
    ck = load_checkpoint(ckpt_path)
    assert ck.image_hw == (48, 64) and ck.dt_s == pytest.approx(0.1) and ck.state_dim == 3
    assert ck.vision_cfg.encoder == 'small_cnn'


def test_same_seed_same_weights(tmp_path):
    a = create_untrained_checkpoint(tmp_path / 'a.ckpt', JOINTS, preset='tiny', seed=1)
    b = create_untrained_checkpoint(tmp_path / 'b.ckpt', JOINTS, preset='tiny', seed=1)
    c = create_untrained_checkpoint(tmp_path / 'c.ckpt', JOINTS, preset='tiny', seed=2)
    sa, sb, sc = (load_checkpoint(p).state_dict for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def _write(tmp_path, d):
    p = tmp_path / 'bad.ckpt'
    torch.save(d, p)
    return p


def test_truncated_and_garbage_files(ckpt_path, tmp_path):
    data = open(ckpt_path, 'rb').read()
    trunc = tmp_path / 'trunc.ckpt'
    trunc.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='corrupt or truncated'):
        load_checkpoint(trunc)
    garbage = tmp_path / 'garbage.ckpt'
    garbage.write_bytes(b'not a checkpoint at all' * 10)
    with pytest.raises(CheckpointError, match='trunc.ckpt|garbage.ckpt'):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'missing.ckpt')


class Thing:
    pass


def test_pickled_objects_are_refused(tmp_path):
    p = tmp_path / 'obj.ckpt'
    torch.save({'format_version': FORMAT_VERSION, 'x': Thing()}, p)
    with pytest.raises(CheckpointError, match='obj.ckpt'):
        load_checkpoint(p)


def test_wrong_version_missing_keys_and_bad_values(ckpt_path, tmp_path):
    good = torch.load(ckpt_path, weights_only=True)
    with pytest.raises(CheckpointError, match='format_version 99'):
        load_checkpoint(_write(tmp_path, {**good, 'format_version': 99}))
    with pytest.raises(CheckpointError, match="missing keys \\['normalizer'\\]"):
        load_checkpoint(_write(tmp_path, {k: v for k, v in good.items() if k != 'normalizer'}))
    with pytest.raises(CheckpointError, match='no format_version'):
        load_checkpoint(_write(tmp_path, {'state_dict': {}}))
    with pytest.raises(CheckpointError, match='2 joint_names but state_dim 3'):
        load_checkpoint(_write(tmp_path, {**good, 'joint_names': ['a', 'b']}))
    with pytest.raises(CheckpointError, match='horizon'):
        load_checkpoint(_write(tmp_path, {**good, 'horizon': 32}))
    with pytest.raises(CheckpointError, match='invalid config'):
        load_checkpoint(_write(tmp_path, {**good, 'model_config': {**good['model_config'], 'horizon': 15}}))


def test_shape_mismatch_names_the_weight(ckpt_path, tmp_path):
    good = torch.load(ckpt_path, weights_only=True)
    sd = dict(good['state_dict'])
    key = next(k for k in sd if k.endswith('final_conv.1.weight'))
    sd[key] = torch.zeros(7, 7, 7)
    with pytest.raises(CheckpointError, match='shape mismatch for .*final_conv.1.weight'):
        load_checkpoint(_write(tmp_path, {**good, 'state_dict': sd}))
    sd = dict(good['state_dict'])
    sd.pop(key)
    with pytest.raises(CheckpointError, match='missing'):
        load_checkpoint(_write(tmp_path, {**good, 'state_dict': sd}))


def test_save_is_atomic(tmp_path, ckpt_path):
    ck = load_checkpoint(ckpt_path)
    out = ck.save(tmp_path / 'sub' / 'x.ckpt')
    assert os.listdir(tmp_path / 'sub') == ['x.ckpt']
    assert load_checkpoint(out).joint_names == JOINTS
