"""Inference backends: ONNX Runtime and torch.jit give the torch result on the same noise (within
1e-4), for state-only, multi-camera and regression checkpoints; warm-up measures and picks a backend
per batch size."""
import numpy as np
import pytest
import torch

from dp_policy.checkpoint import create_untrained_checkpoint, load_checkpoint
from dp_policy.config import ModelConfig
from dp_policy.policy import DiffusionPolicy

pytest.importorskip('onnxruntime')
torch.set_num_threads(1)
JOINTS = ['a', 'b', 'c']


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp('backends')
    reg = ModelConfig(down_dims=(16, 32), kernel_size=3, step_embed_dim=16, n_groups=4, kind='regression',
                      regression_hidden=32)
    return {
        'state': create_untrained_checkpoint(d / 's.ckpt', JOINTS, preset='tiny', seed=1,
                                             action_min=-2.0, action_max=1.0),
        'images': create_untrained_checkpoint(d / 'i.ckpt', JOINTS, ['top', 'wrist'], (24, 32), preset='tiny',
                                              seed=2),
        'regression': create_untrained_checkpoint(d / 'r.ckpt', JOINTS, ['top'], (24, 32), preset='tiny',
                                                  seed=3, model_cfg=reg),
    }


def inputs(ckpt, b, k, seed=0):
    rng = np.random.default_rng(seed)
    state = rng.uniform(-1, 1, (b, 2, 3)).astype(np.float32)
    imgs = {c: rng.integers(0, 256, (b, 2, 24, 32, 3), dtype=np.uint8) for c in ckpt.camera_names}
    noise = rng.standard_normal((b, k, 16, 3)).astype(np.float32)
    return state, imgs, noise


@pytest.mark.parametrize('which', ['state', 'images', 'regression'])
def test_onnx_and_jit_equal_torch_on_the_same_noise(ckpts, which):
    ckpt = load_checkpoint(ckpts[which])
    ref = DiffusionPolicy(ckpt, backend='torch', num_samples=3)
    onnx = DiffusionPolicy(ckpt, backend='onnxruntime', num_samples=3)
    jit = DiffusionPolicy(ckpt, backend='auto', num_samples=3)
    for b in (1, 4):                          # one export serves every batch size (dynamic axes)
        state, imgs, noise = inputs(ckpt, b, 3, seed=b)
        a = ref.predict(state, imgs, noise=noise)
        o = onnx.predict(state, imgs, noise=noise)
        assert o.backend == 'onnxruntime' and a.backend == 'torch'
        assert np.abs(o.samples - a.samples).max() < 1e-4
        j = jit._get_backend('torch-jit').run(*jit._inputs(state, imgs, noise))
        t = ref._get_backend('torch').run(*ref._inputs(state, imgs, noise))
        assert (j - t).abs().max() < 1e-4
    # the result depends on the inputs (a constant-folded graph would not)
    state2, imgs2, noise2 = inputs(ckpt, 1, 3, seed=9)
    if which != 'regression':
        assert not np.allclose(onnx.predict(state, imgs, noise=noise2[:1].repeat(b, 0)).samples,
                               o.samples, atol=1e-3)
    assert not np.allclose(onnx.predict(state2, imgs2, noise=noise2).samples, o.samples[:1], atol=1e-3)


def test_warmup_measures_each_backend_and_picks_the_fastest_per_batch(ckpts):
    pol = DiffusionPolicy.from_checkpoint(ckpts['state'], backend='auto', num_samples=2)
    choice = pol.warmup(batch_sizes=(1, 3), repeats=2)
    assert set(choice) == {1, 3}
    for b in (1, 3):
        timings = pol.warmup_timings[b]
        assert set(timings) == {'torch', 'torch-jit', 'onnxruntime'}
        assert all(0 < v < float('inf') for v in timings.values())
        assert choice[b] == min(timings, key=timings.get)
        out = pol.predict(inputs(pol.ckpt, b, 2)[0])
        assert out.backend == choice[b]
    assert pol.backend_for(7) == 'torch'                   # never measured: the safe default
    forced = DiffusionPolicy.from_checkpoint(ckpts['state'], backend='onnxruntime')
    assert forced.warmup((1,), repeats=1) == {1: 'onnxruntime'}
    with pytest.raises(ValueError, match='backend must be'):
        DiffusionPolicy.from_checkpoint(ckpts['state'], backend='tensorrt')
