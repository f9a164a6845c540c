"""Consistency sampling and distillation (ROS-free): the sampler's arithmetic, one graph for every
backend, the distillation loss, and `dp_train distill`'s checks. The distilled student keeping
both modes of the bimodal task is in test_bimodal.py (slow)."""
import numpy as np
import pytest
import torch

from dp_policy.checkpoint import create_untrained_checkpoint, load_checkpoint
from dp_policy.config import SchedulerConfig
from dp_policy.policy import DiffusionPolicy
from dp_policy.sampling.schedulers import (DenoisingLoop, alphas_cumprod, consistency_coefficients,
                                           inference_timesteps)
from dp_policy.training.distill import ConsistencyObjective, solver_skip, student_scheduler

torch.set_num_threads(1)


class FakeEps(torch.nn.Module):
    """A deterministic, nonlinear epsilon 'network'."""

    def forward(self, x, t, cond):
        return torch.tanh(x * 0.7 + cond[:, None, :x.shape[-1]]) * (1.0 + t[:, None, None] / 200.0)


def test_timesteps_start_at_the_noisiest_level_and_the_boundary_is_exact():
    cfg = SchedulerConfig(kind='consistency', num_inference_steps=1)
    assert [inference_timesteps(cfg, k) for k in (1, 2, 3)] == [[90], [90, 45], [90, 60, 30]]
    c_skip, c_out = consistency_coefficients(torch.tensor([0, 1, 99]))
    assert c_skip[0] == 1.0 and c_out[0] == 0.0                 # f(x, 0) = x
    assert c_skip[1] < 3e-3 and c_out[2] > 0.9999               # from t = 1 on: the x0 estimate
    with pytest.raises(ValueError, match='epsilon'):
        DenoisingLoop(FakeEps(), SchedulerConfig(kind='consistency', prediction_type='sample'))


def test_two_step_loop_is_f_then_renoise_then_f():
    cfg = SchedulerConfig(kind='consistency', num_inference_steps=2, clip_sample=False)
    net, acp = FakeEps(), alphas_cumprod(cfg)
    torch.manual_seed(0)
    x, cond, z = torch.randn(3, 16, 2), torch.randn(3, 4), torch.randn(2, 3, 16, 2)

    def f(x, t):
        tt = torch.full((x.shape[0],), float(t))
        x0 = (x - (1 - acp[t]).sqrt() * net(x, tt, cond)) / acp[t].sqrt()
        c_skip, c_out = consistency_coefficients(torch.tensor(t))
        return c_skip * x + c_out * x0
    first = f(x, 90)
    expected = f(acp[45].sqrt() * first + (1 - acp[45]).sqrt() * z[0], 45)
    out = DenoisingLoop(net, cfg)(x.clone(), cond, z)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.fixture(scope='module')
def student(tmp_path_factory):
    d = tmp_path_factory.mktemp('consistency')
    return create_untrained_checkpoint(
        d / 'c.ckpt', ['a', 'b', 'c'], ['top'], (24, 32), preset='tiny', seed=4,
        sched_cfg=student_scheduler(SchedulerConfig(), 1))


def test_a_one_step_student_gives_one_result_on_every_backend(student):
    """One step draws no extra noise: torch, torch.jit and the exported ONNX graph agree."""
    pytest.importorskip('onnxruntime')
    ckpt = load_checkpoint(student)
    rng = np.random.default_rng(0)
    state = rng.uniform(-1, 1, (2, 2, 3)).astype(np.float32)
    imgs = {'top': rng.integers(0, 256, (2, 2, 24, 32, 3), dtype=np.uint8)}
    noise = rng.standard_normal((2, 3, 16, 3)).astype(np.float32)
    pol = DiffusionPolicy(ckpt, backend='auto', num_samples=3)
    assert pol.num_inference_steps == 1 and pol.scheduler == 'consistency'
    args = pol._inputs(state, imgs, noise)
    outs = {name: pol._get_backend(name).run(*args).numpy()
            for name in ('torch', 'torch-jit', 'onnxruntime')}
    for name in ('torch-jit', 'onnxruntime'):
        np.testing.assert_allclose(outs[name], outs['torch'], atol=1e-4, err_msg=name)
    assert np.abs(outs['torch']).max() <= 1.0 + 1e-6          # the clean chunk is clipped


def test_the_distillation_loss_anchors_at_the_boundary_and_trains_only_the_student(student):
    """Where t_lo = 0 the target is the teacher's DDIM step itself (f(x, 0) = x): a student equal
    to the teacher has a loss there of its own one-step error only; gradients reach the student
    alone."""
    ckpt = load_checkpoint(student)
    teacher, stud = ckpt.build_model(), ckpt.build_model()
    stud.train()
    obj = ConsistencyObjective(stud, teacher, SchedulerConfig(), segments=10)
    assert obj.t_max == 90 and obj.skip == solver_skip(91, 10) == 9 and solver_skip(100, 3) == 33
    state = torch.rand(4, 2, 3) * 2 - 1
    images = {'top': torch.randint(0, 256, (4, 2, 24, 32, 3), dtype=torch.uint8)}
    action = torch.rand(4, 16, 3) * 2 - 1
    torch.manual_seed(0)
    loss = obj(state, images, action)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= 0
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stud.parameters())
    with pytest.raises(ValueError, match='1 to 3'):
        student_scheduler(SchedulerConfig(), 4)
