"""Consistency distillation of a trained Diffusion Policy into a 1-3 step student (ROS-free).

The student is a consistency function f(x_t, t) (Song et al. 2023; sampling/schedulers.py): the
point its teacher's probability-flow ODE reaches at t = 0 from x_t. It samples in 1-3 calls at
the timesteps of its checkpoint's `consistency` scheduler ([90], [90, 45], [90, 60, 30] of 100).

Which loss, and why: the consistency-trajectory target at its end point. Consistency trajectory
models (CTM, Kim et al. 2023) match the student's jump from t to 0 against the teacher's ODE
solution from t to some u followed by the (stop-gradient) student from u to 0; we take u = 0,
i.e. the teacher's own solution, from x_t to 0 in DDIM steps (a DDIM step is a first-order solver
of the teacher's ODE), and we train the student at the timesteps it samples at, with the
pseudo-Huber loss of improved consistency training (Song & Dhariwal 2023). Per training step:

    a demonstrated chunk x0, noise z, t drawn from the student's sampling timesteps
    x_t    = sqrt(a_t) x0 + sqrt(1 - a_t) z                       (forward diffusion)
    target = the teacher's DDIM solution from (x_t, t) to 0, `segments` steps over [0, t_max]
    loss   = pseudo-Huber( f_student(x_t, t) - target )

Measured on the bimodal toy task (test_bimodal.py; the teacher's DDIM-10 sends 1.5 % of its
samples through the obstacle), one-step sampling after distillation: the bootstrapped target of
consistency distillation (CD, Song et al. Algorithm 2, as Consistency Policy uses: the student's
own f one teacher step lower) still averaged the modes, 54 % / 33 % / 28 % through the obstacle
after 300 / 1000 / 3000 steps; the soft CTM target (u drawn along the teacher's path) 41 % / 20 %
after 300 / 1500; the end point over every timestep 43 % / 24.5 %; the end point at the sampling
timestep with MSE 14.5 % (1500 steps), with pseudo-Huber 10 %, 7 % at a 3x learning rate. Each
noise maps to the one chunk the teacher's ODE maps it to, so the student keeps the teacher's modes
instead of averaging them, and there is nothing else to train (no discriminator or second score
network, as distribution-matching distillation needs).

The student starts as a copy of the teacher (same architecture, normalisers, weights) and keeps the
teacher's observation encoder, frozen: distillation changes how the network denoises, not what it
sees, and each step then costs one encoder pass without gradient (the expensive part of an image
policy). The deployed weights are the EMA of the student, as in training.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from dp_policy.config import SchedulerConfig
from dp_policy.sampling.schedulers import (alphas_cumprod, consistency_coefficients,
                                           consistency_t_max, inference_timesteps)

MAX_STUDENT_STEPS = 3


def student_scheduler(teacher: SchedulerConfig, steps: int) -> SchedulerConfig:
    """The student checkpoint's scheduler: the teacher's noise schedule, consistency sampling."""
    if not 1 <= steps <= MAX_STUDENT_STEPS:
        raise ValueError(f'student steps must be 1 to {MAX_STUDENT_STEPS}, got {steps}')
    if teacher.prediction_type != 'epsilon':
        raise ValueError('consistency distillation needs an epsilon-predicting teacher')
    return dataclasses.replace(teacher, kind='consistency', num_inference_steps=steps)


def solver_skip(num_train_timesteps: int, segments: int) -> int:
    """The teacher's solver step s in training timesteps: (N-1)/segments, rounded."""
    n = num_train_timesteps
    if not 1 <= segments <= n - 1:
        raise ValueError(f'segments must be in [1, {n - 1}], got {segments}')
    return max(1, int(round((n - 1) / segments)))


def pseudo_huber(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Improved consistency training's loss: sqrt(||d||^2 + c^2) - c per sample, c = 0.00054
    sqrt(dim); quadratic for small errors, linear for large ones (less pull towards a mean)."""
    d = (pred.float() - target.float()).flatten(1)
    c = 0.00054 * d.shape[1] ** 0.5
    return (torch.sqrt(d.pow(2).sum(1) + c * c) - c).mean()


class ConsistencyObjective(nn.Module):
    """(state, images, action) -> the distillation loss of one batch (see module docstring); the
    module the training run optimises in place of the denoising loss. ``sched`` is the student's
    (student_scheduler): its timesteps are the ones trained."""

    def __init__(self, student: nn.Module, teacher: nn.Module, sched: SchedulerConfig,
                 segments: int = 10):
        super().__init__()
        if sched.kind != 'consistency':
            raise ValueError(f"the student's scheduler must be 'consistency', got {sched.kind!r}")
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        for p in self.student.obs_encoder.parameters():   # frozen: the teacher's encodes for both
            p.requires_grad_(False)
        acp = alphas_cumprod(sched)
        self.register_buffer('sqrt_a', acp.sqrt(), persistent=False)                    # (N,)
        self.register_buffer('sqrt_b', (1 - acp).sqrt(), persistent=False)              # (N,)
        self.register_buffer('timesteps', torch.tensor(inference_timesteps(sched)),
                             persistent=False)                                          # (K,)
        self.t_max = consistency_t_max(sched.num_train_timesteps)
        self.skip = solver_skip(self.t_max + 1, segments)
        self.clip = float(sched.clip_sample_range) if sched.clip_sample else None

    def _coef(self, t: torch.Tensor, x: torch.Tensor):
        shape = (-1,) + (1,) * (x.dim() - 1)
        return self.sqrt_a[t].reshape(shape), self.sqrt_b[t].reshape(shape)

    def consistency(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor,
                    cond: torch.Tensor) -> torch.Tensor:
        """f(x, t) = c_skip x + c_out x0_hat of an epsilon network (sampling/schedulers.py)."""
        a, b = self._coef(t, x)
        x0 = (x - b * model.unet(x, t, cond)) / a
        c_skip, c_out = (c.reshape(a.shape).to(x.dtype) for c in consistency_coefficients(t))
        return c_skip * x + c_out * x0

    @torch.no_grad()
    def teacher_solution(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The teacher's ODE from (x[i], t[i]) to 0: DDIM steps (eta 0) of self.skip timesteps."""
        for _ in range(-(-int(t.max()) // self.skip)):
            moving = (t > 0).reshape(-1, *([1] * (x.dim() - 1)))
            t_next = (t - self.skip).clamp(min=0)
            a, b = self._coef(t, x)
            eps = self.teacher.unet(x, t, cond)
            x0 = (x - b * eps) / a
            if self.clip is not None:
                x0 = x0.clamp(-self.clip, self.clip)
            a_n, b_n = self._coef(t_next, x)
            x = torch.where(moving, a_n * x0 + b_n * eps, x)
            t = t_next
        return x

    def forward(self, state: torch.Tensor, images: dict[str, torch.Tensor],
                action: torch.Tensor) -> torch.Tensor:
        n = action.shape[0]
        t = self.timesteps[torch.randint(0, len(self.timesteps), (n,), device=action.device)]
        a, b = self._coef(t, action)
        x_t = a * action + b * torch.randn_like(action)                            # (B, T, A)
        with torch.no_grad():
            cond = self.teacher.encode(state, images)                              # (B, G)
            target = self.teacher_solution(x_t, t, cond)
        return pseudo_huber(self.consistency(self.student, x_t, t, cond), target)
