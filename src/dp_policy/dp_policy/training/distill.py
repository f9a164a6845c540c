"""Consistency distillation of a trained Diffusion Policy into a 1-3 step student (ROS-free).

Which loss, and why: consistency distillation (CD; Song et al. 2023, "Consistency Models",
Algorithm 2; Consistency Policy, Prasad et al. 2024, distils Diffusion Policy the same way). The
teacher here is an epsilon-predicting network sampled by DDIM, and a DDIM step is exactly a
first-order solver of its probability-flow ODE: CD needs that solver and nothing else (no
discriminator, no second "fake score" network as distribution-matching distillation needs, no
training of a separate trajectory model as consistency trajectory models do), and it maps each
noise to the chunk the teacher's ODE maps it to, so the student keeps the teacher's modes (one
sample is one mode, not their average). Per training step:

    a demonstrated chunk x0, noise z, t_hi drawn from 1..t_max (0.9 N: where sampling starts,
    schedulers.consistency_t_max) and t_lo = max(0, t_hi - s), s = t_max/segments (every
    timestep is trained, the ones 2-3 step students sample at too)
    x_hi   = sqrt(a_hi) x0 + sqrt(1 - a_hi) z                  (forward diffusion)
    x_lo   = DDIM step of the TEACHER from t_hi to t_lo        (its ODE, no gradient)
    loss   = || f_student(x_hi, t_hi) - sg(f_student(x_lo, t_lo)) ||^2

with f the consistency function of sampling/schedulers.py (f(x, 0) = x: the boundary anchors the
chain) and sg the stop-gradient of the online student itself (the target network with EMA rate 0,
as improved consistency training found best). The student starts as a copy of the teacher (same
architecture and normalisers), which makes its first f already the teacher's one-step x0
estimate; the deployed weights are the EMA of the student, as in training.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from dp_policy.config import SchedulerConfig
from dp_policy.sampling.schedulers import (alphas_cumprod, consistency_coefficients,
                                           consistency_t_max)

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


class ConsistencyObjective(nn.Module):
    """(state, images, action) -> the consistency distillation loss of one batch (see module
    docstring); the module the training run optimises in place of the denoising loss."""

    def __init__(self, student: nn.Module, teacher: nn.Module, sched: SchedulerConfig,
                 segments: int = 10):
        super().__init__()
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        acp = alphas_cumprod(sched)
        self.register_buffer('sqrt_a', acp.sqrt(), persistent=False)                    # (N,)
        self.register_buffer('sqrt_b', (1 - acp).sqrt(), persistent=False)              # (N,)
        self.n = sched.num_train_timesteps
        self.t_max = consistency_t_max(self.n)
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

    def forward(self, state: torch.Tensor, images: dict[str, torch.Tensor],
                action: torch.Tensor) -> torch.Tensor:
        n = action.shape[0]
        t_hi = torch.randint(1, self.t_max + 1, (n,), device=action.device)
        t_lo = (t_hi - self.skip).clamp(min=0)
        noise = torch.randn_like(action)
        a_hi, b_hi = self._coef(t_hi, action)
        x_hi = a_hi * action + b_hi * noise                                        # (B, T, A)
        with torch.no_grad():
            eps = self.teacher.unet(x_hi, t_hi, self.teacher.encode(state, images))
            x0 = (x_hi - b_hi * eps) / a_hi
            if self.clip is not None:
                x0 = x0.clamp(-self.clip, self.clip)
            a_lo, b_lo = self._coef(t_lo, action)
            x_lo = a_lo * x0 + b_lo * eps                                          # DDIM, eta 0
        cond = self.student.encode(state, images)                                  # (B, G)
        pred = self.consistency(self.student, x_hi, t_hi, cond)
        with torch.no_grad():
            target = self.consistency(self.student, x_lo, t_lo, cond.detach())
        return F.mse_loss(pred.float(), target.float())
