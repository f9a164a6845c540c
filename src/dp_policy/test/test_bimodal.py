"""Proof that it is Diffusion Policy and not regression (the paper's central claim, reproduced),
and that a one-step consistency student distilled from it (dp_train distill) is too.

Synthetic task: a point goes from (0, -1) to (0, +1) around an obstacle at the origin, passing it
on the left or on the right with equal probability; the first observation is the same for both.
A Diffusion Policy trained with the project's trainer for at most 60 s yields both modes (each at
least 25% of 200 sampled chunks, under 5% in the middle, i.e. through the obstacle), while the
MSE regression baseline trained the same way (same encoder, steps, batch, lr) lands in the middle.
The student, distilled from that Diffusion Policy in DISTILL_STEPS steps and sampled in one network
call, yields both modes too (each at least 25 %, under 10 % in the middle).

The budget is a fixed number of steps that takes well under 60 s of CPU time on one core (printed,
and asserted on the CPU time of the process, which a loaded machine does not inflate): the test is
deterministic (seeded, no wall-clock cut-off) and passes the same on a busy machine.
"""
import time

import numpy as np
import pytest
import torch

import dp_policy.training.trainer as trainer
from dp_policy.checkpoint import load_checkpoint
from dp_policy.config import ModelConfig, SchedulerConfig, TrainConfig, VisionConfig
from dp_policy.data.episode import Episode, EpisodeSetMeta
from dp_policy.policy import DiffusionPolicy

pytestmark = pytest.mark.slow   # ~1 min on an idle 2-core machine (minutes when it is busy)

L = 12                      # steps per demonstration
STEPS = 600                 # training steps, both models
DISTILL_STEPS = 1500        # consistency distillation of the diffusion model
MIDDLE = 0.3                # |x| below this (obstacle radius 0.3) = through the obstacle


def demos(n=200, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    s = np.linspace(0.0, 1.0, L)
    for i in range(n):
        side = 1.0 if i % 2 else -1.0
        r = rng.uniform(0.8, 1.0)
        q = np.stack([side * r * np.sin(np.pi * s), -np.cos(np.pi * s)], axis=1)
        q = (q + rng.normal(0, 0.01, q.shape)).astype(np.float32)
        q[0] = (0.0, -1.0)  # identical start: the choice of side is not in the observation
        eps.append(Episode(name=f'demo{i}', t=s * (L - 1) * 0.1, state=q, action=np.roll(q, -1, 0)))
        eps[-1].action[-1] = q[-1]
    return eps, EpisodeSetMeta(['x', 'y'], [], None, 0.1, f'bimodal-{n}')


def side_of_chunks(samples):
    """samples (K, T, 2) from the start: mean x over chunk steps 3..7 (path steps 2..6, where
    |x| >= 0.5 r on either side)."""
    return samples[:, 3:8, 0].mean(axis=1)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    eps, meta = demos()
    # small enough to make ~1000 steps in 60 s on a loaded 2-core machine
    model = ModelConfig(down_dims=(32, 64), kernel_size=5, step_embed_dim=32, horizon=8,
                        n_obs_steps=2, n_action_steps=4)
    train_cfg = TrainConfig(batch_size=64, lr=2e-3, warmup_steps=50, steps=STEPS,
                            ema_decay=0.99, checkpoint_every=10 ** 6, log_every=100, seed=0)
    out = tmp_path_factory.mktemp('bimodal')
    ckpts = {}
    for kind in ('diffusion', 'regression'):
        m = ModelConfig(**{**trainer.to_dict(model), 'kind': kind})
        cpu0 = time.process_time()
        path = trainer.train(eps, meta, m, VisionConfig(), SchedulerConfig(), train_cfg, out / kind,
                             progress=False)
        cpu_s = time.process_time() - cpu0
        print(f'\n{kind}: {STEPS} steps in {cpu_s:.1f} s CPU time')
        if kind == 'diffusion':
            assert cpu_s < 60.0, f'diffusion training took {cpu_s:.0f} s of CPU time (budget 60 s)'
        ckpts[kind] = load_checkpoint(path)
    return ckpts


def sample_start(ckpt, k=200):
    pol = DiffusionPolicy(ckpt, backend='torch', num_samples=k, seed=1)
    start = np.array([[[0.0, -1.0], [0.0, -1.0]]], np.float32)
    return side_of_chunks(pol.predict(start).samples[0])


def test_diffusion_policy_keeps_both_modes(trained):
    x = sample_start(trained['diffusion'])
    left, right, middle = np.mean(x < -MIDDLE), np.mean(x > MIDDLE), np.mean(np.abs(x) <= MIDDLE)
    print(f'diffusion ({trained["diffusion"].train_steps} steps): left {left:.0%} right {right:.0%} '
          f'middle {middle:.0%}')
    assert left >= 0.25 and right >= 0.25, (left, right)
    assert middle < 0.05, middle


def test_regression_baseline_averages_the_modes(trained):
    x = sample_start(trained['regression'])
    print(f'regression ({trained["regression"].train_steps} steps): mean |x| {np.abs(x).mean():.3f}')
    assert np.all(np.abs(x) <= MIDDLE), x[:5]


def test_a_distilled_one_step_student_keeps_both_modes(trained, tmp_path):
    """One network call per chunk, and still both sides: each noise goes to the chunk the
    teacher's ODE takes it to, one mode per sample, not their average. (Middle, measured
    2026-12-05: the teacher's DDIM-10 1.5 %, this student 7-8 %, the regression 100 %; the
    losses that were tried before this one and their numbers: training/distill.py.)"""
    from dp_policy.training.distill import student_scheduler
    teacher = trained['diffusion']
    eps, meta = demos()
    cfg = TrainConfig(batch_size=64, lr=3e-3, warmup_steps=20, steps=DISTILL_STEPS, ema_decay=0.99,
                      checkpoint_every=10 ** 6, log_every=100, seed=0)
    cpu0 = time.process_time()
    path = trainer.train(eps, meta, teacher.model_cfg, teacher.vision_cfg,
                         student_scheduler(teacher.sched_cfg, 1), cfg, tmp_path / 'student',
                         progress=False, teacher=teacher)
    cpu_s = time.process_time() - cpu0
    print(f'\ndistillation: {DISTILL_STEPS} steps in {cpu_s:.1f} s CPU time')
    assert cpu_s < 240.0, f'distillation took {cpu_s:.0f} s of CPU time (budget 240 s; 120 s measured)'
    student = load_checkpoint(path)
    assert student.sched_cfg.kind == 'consistency' and student.sched_cfg.num_inference_steps == 1
    x = sample_start(student, k=1000)
    left, right, middle = np.mean(x < -MIDDLE), np.mean(x > MIDDLE), np.mean(np.abs(x) <= MIDDLE)
    print(f'student (1 step): left {left:.0%} right {right:.0%} middle {middle:.0%}')
    assert left >= 0.25 and right >= 0.25, (left, right)
    assert middle < 0.10, middle
