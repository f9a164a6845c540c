"""Fixtures of dp_eval's tests: synthetic demonstration bags (both storage formats) and a tiny
random-init checkpoint built with the core's API (no training)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault('OMP_NUM_THREADS', '1')

JOINTS = ['joint1', 'joint2', 'joint3']


@pytest.fixture(scope='session')
def bags(tmp_path_factory):
    """{'sqlite3': [mode +1 bag, mode -1 bag], 'mcap': [...]}: bgr8 camera with padded rows."""
    from dp_eval.synthetic import SyntheticSpec, write_demo_bag
    root = tmp_path_factory.mktemp('bags')
    out = {}
    for storage in ('sqlite3', 'mcap'):
        out[storage] = [write_demo_bag(root / f'{storage}_{m}', SyntheticSpec(mode=m), storage)
                        for m in (1, -1)]
    return out


@pytest.fixture(scope='session')
def tiny_ckpt(tmp_path_factory):
    """Random-init 'tiny' checkpoint: joints joint1..3, one camera 'camera' at 24x32, dt 0.1 s."""
    import torch
    torch.set_num_threads(1)
    from dp_policy.checkpoint import create_untrained_checkpoint
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.ckpt'
    return create_untrained_checkpoint(path, JOINTS, ['camera'], (24, 32), preset='tiny',
                                       dt_s=0.1, action_min=-1.0, action_max=1.0)


@pytest.fixture(scope='session')
def tiny_state_ckpt(tmp_path_factory):
    """Random-init 'tiny' checkpoint without cameras."""
    import torch
    torch.set_num_threads(1)
    from dp_policy.checkpoint import create_untrained_checkpoint
    path = tmp_path_factory.mktemp('ckpt') / 'tiny_state.ckpt'
    return create_untrained_checkpoint(path, JOINTS, [], None, preset='tiny', dt_s=0.1,
                                       action_min=-1.0, action_max=1.0)
