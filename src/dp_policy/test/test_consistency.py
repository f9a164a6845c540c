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


def test_the_distillation_target_is_the_teachers_ode_solution_and_trains_only_the_denoiser(student):
    """The target from (x_t, t) is the teacher's DDIM-10 solution down to 0 (the same chunk the
    teacher's sampler gives from there); gradients reach the student's denoiser alone (not the
    teacher, not the student's frozen encoder)."""
    ckpt = load_checkpoint(student)
    teacher, stud = ckpt.build_model(), ckpt.build_model()
    stud.train()
    obj = ConsistencyObjective(stud, teacher, student_scheduler(SchedulerConfig(), 2), segments=10)
    assert obj.t_max == 90 and obj.skip == solver_skip(91, 10) == 9 and solver_skip(100, 3) == 33
    assert obj.timesteps.tolist() == [90, 45]
    state = torch.rand(4, 2, 3) * 2 - 1
    images = {'top': torch.randint(0, 256, (4, 2, 24, 32, 3), dtype=torch.uint8)}
    action = torch.rand(4, 16, 3) * 2 - 1

    # the solution from t = 90 is DDIM's 10 steps 90, 81, ..., 9 -> 0 (clip at each x0)
    x = torch.randn(4, 16, 3)
    cond = teacher.encode(state, images)
    t90 = torch.full((4,), 90)
    got = obj.teacher_solution(x, t90, cond)
    acp = alphas_cumprod(SchedulerConfig())
    ref, ts = x.clone(), list(range(90, -1, -9))
    with torch.no_grad():
        for t, t_next in zip(ts[:-1], ts[1:]):
            eps = teacher.unet(ref, torch.full((4,), t), cond)
            x0 = ((ref - (1 - acp[t]).sqrt() * eps) / acp[t].sqrt()).clamp(-1, 1)
            ref = acp[t_next].sqrt() * x0 + (1 - acp[t_next]).sqrt() * eps
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # samples at different timesteps solve independently (t = 45 stops at 0 too)
    mixed = obj.teacher_solution(x, torch.tensor([90, 45, 90, 45]), cond)
    torch.testing.assert_close(mixed[0], got[0])
    torch.testing.assert_close(mixed[2], got[2])
    torch.testing.assert_close(mixed[1:2], obj.teacher_solution(x[1:2], torch.tensor([45]),
                                                                cond[1:2]))

    torch.manual_seed(0)
    loss = obj(state, images, action)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= 0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in stud.obs_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stud.unet.parameters())
    with pytest.raises(ValueError, match='consistency'):
        ConsistencyObjective(stud, teacher, SchedulerConfig())
    with pytest.raises(ValueError, match='1 to 3'):
        student_scheduler(SchedulerConfig(), 4)
