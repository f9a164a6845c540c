"""The inference form of the U-Net (fast_unet.StepConditionedUnet) is the same function as the
trained ConditionalUnet1D: per denoising step, over a whole DDIM/DDPM loop, inside the Sampler that
every backend runs, and in its ONNX export (whose Mish is written in elementary operators)."""
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dp_policy.sampling.backends import Sampler
from dp_policy.config import ModelConfig, SchedulerConfig
from dp_policy.model.fast_unet import StepConditionedUnet, mish_elementary
from dp_policy.model.unet import ConditionalUnet1D
from dp_policy.sampling.schedulers import DenoisingLoop, inference_timesteps

torch.set_num_threads(1)


def trained_like(cfg: ModelConfig, action_dim=3, cond_dim=10, seed=0) -> ConditionalUnet1D:
    """Random weights with trained-like spread (default init leaves GroupNorm affine at 1/0)."""
    torch.manual_seed(seed)
    net = ConditionalUnet1D(action_dim, cond_dim, cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return net


CFGS = [
    ModelConfig(down_dims=(16, 32, 64), kernel_size=5, step_embed_dim=32, n_groups=4),
    ModelConfig(down_dims=(16, 32), kernel_size=3, step_embed_dim=16, n_groups=4, cond_predict_scale=False),
    ModelConfig(down_dims=(16,), kernel_size=5, step_embed_dim=16, n_groups=4, horizon=10, n_action_steps=4),
]


@pytest.mark.parametrize('cfg', CFGS, ids=['3-level', 'bias-only-film', '1-level-h10'])
@pytest.mark.parametrize('batch', [1, 5])
def test_every_step_equals_the_trained_network(cfg, batch):
    net = trained_like(cfg)
    steps = torch.tensor([90.0, 45.0, 7.0, 0.0])
    fast = StepConditionedUnet(net, steps).eval()
    x = torch.randn(batch, cfg.horizon, 3)
    cond = torch.randn(batch, 10)
    with torch.no_grad():
        ctx = fast.condition(cond)
        for k, t in enumerate(steps):
            ref = net(x, t.expand(batch), cond)
            out = fast(x, k, ctx)
            assert out.shape == ref.shape
            assert (out - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize('kind', ['ddim', 'ddpm'])
def test_whole_loop_equals_the_reference_loop(kind):
    cfg = CFGS[0]
    net = trained_like(cfg, seed=1)
    sched = SchedulerConfig(kind=kind, num_inference_steps=8)
    steps = torch.tensor(inference_timesteps(sched), dtype=torch.float32)
    ref_loop = DenoisingLoop(net, sched).eval()
    fast_loop = DenoisingLoop(StepConditionedUnet(net, steps), sched).eval()
    x = torch.randn(3, 16, 3)
    cond = torch.randn(3, 10)
    z = torch.randn(ref_loop.num_steps, 3, 16, 3)
    with torch.no_grad():
        ref = ref_loop(x.clone(), cond, z)
        out = fast_loop(x.clone(), cond, z)
    assert (out - ref).abs().max() < 1e-4


def test_source_network_is_left_untouched_and_weights_are_copied():
    net = trained_like(CFGS[1])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = StepConditionedUnet(net, torch.tensor([10.0]))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x, cond = torch.randn(1, 16, 3), torch.randn(1, 10)
    with torch.no_grad():
        out = fast(x, 0, fast.condition(cond))
        for p in net.parameters():
            p.zero_()
        assert torch.equal(out, fast(x, 0, fast.condition(cond)))


def test_elementary_mish_equals_mish_everywhere():
    x = torch.cat([torch.linspace(-120, 120, 100_001), torch.tensor([-1e30, -1e4, 0.0, 1e4, 1e30])])
    y = mish_elementary(x)
    assert torch.isfinite(y).all()
    assert (y - F.mish(x)).abs().max() < 2e-6


def test_onnx_export_of_the_sampler_equals_the_reference_loop():
    ort = pytest.importorskip('onnxruntime')
    from dp_policy.model.models import DiffusionModel
    from dp_policy.config import VisionConfig

    cfg = CFGS[0]
    model = DiffusionModel(3, 3, [], None, cfg, VisionConfig()).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    sched = SchedulerConfig(num_inference_steps=10)
    sampler = Sampler(model, sched).eval()
    state, noise = torch.randn(2, 2, 3), torch.randn(2, 3, 16, 3)
    with torch.no_grad():
        cond = model.obs_encoder(state, {}).repeat_interleave(3, dim=0)
        ref = DenoisingLoop(model.unet, sched)(noise.flatten(0, 1), cond).view(noise.shape)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(sampler, (state, noise), buf, input_names=['state', 'noise'], output_names=['samples'],
                          dynamic_axes={'state': {0: 'B'}, 'noise': {0: 'B', 1: 'K'}}, opset_version=17,
                          dynamo=False)
    sess = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    ops = {n.op_type for n in __import__('onnx').load_from_string(buf.getvalue()).graph.node}
    assert 'Softplus' not in ops and 'Conv' not in ops       # the exported form is the fast one
    for b, k in ((2, 3), (1, 1), (4, 2)):                    # dynamic batch and sample count
        s, n = torch.randn(b, 2, 3), torch.randn(b, k, 16, 3)
        with torch.no_grad():
            c = model.obs_encoder(s, {}).repeat_interleave(k, dim=0)
            r = DenoisingLoop(model.unet, sched)(n.flatten(0, 1), c).view(n.shape).numpy()
        out = sess.run(['samples'], {'state': s.numpy(), 'noise': n.numpy()})[0]
        assert np.abs(out - r).max() < 1e-4
    assert ref.shape == noise.shape
