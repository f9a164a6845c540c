"""Real-time chunking (RTC; Black, Galliker, Levine 2025): sample the next chunk while the current
one executes, its first actions frozen to what will have run by the time it arrives and the rest
inpainted towards the current chunk with a soft mask (ROS-free, eager torch).

The paper guides a flow policy's velocity with PiGDM (Song et al. 2023): at every denoising step,
with A the noisy chunk at flow time tau (0 noise .. 1 data) and A1 = A + (1 - tau) v the clean
estimate,

    v <- v + min(beta, (1 - tau) / (tau r^2)) * J^T (W * (Y - A1)),   r^2 = (1-tau)^2 / (tau^2 + (1-tau)^2)

where Y is the chunk in execution at the new chunk's times, W the soft mask and J = dA1/dA (a
vector-Jacobian product through the network). Here the sampler is DDIM (or consistency) on a VP
schedule: x_t = sqrt(a) x0 + sqrt(1 - a) eps is the flow point A = x_t / s with s = sqrt(a) +
sqrt(1 - a) and tau = sqrt(a) / s (the same signal-to-noise ratio), so the same guidance moves the
clean estimate by

    x0 <- x0 + (1 - tau) w s J_x^T (W * (Y - x0)),   J_x = dx0/dx_t,   w = min(beta, (1-tau)/(tau r^2))

and the step continues from the guided x0 with the epsilon that agrees with it (DDIM) or re-noises
it (consistency). After the last step the frozen actions are set to Y exactly (they run from the
current chunk anyway; the guidance has already brought their neighbours there).

The soft mask over the chunk's T actions (the paper's eq. 5): 1 on the frozen actions (i < d),
exponentially decaying weights c (e^c - 1) / (e - 1), c = (e_end - i) / (e_end - d + 1), on the
rest of the overlap with the current chunk (d <= i < e_end), 0 after it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

BETA = 5.0        # the paper's guidance weight clip


def soft_mask(T: int, frozen_end: int, overlap_end: int) -> np.ndarray:
    """(T,) weights: 1 for i < frozen_end, decaying to 0 at overlap_end, 0 from there on."""
    if not 0 <= frozen_end <= T or overlap_end < frozen_end:
        raise ValueError(f'need 0 <= frozen_end ({frozen_end}) <= T ({T}) and overlap_end >= '
                         f'frozen_end ({overlap_end})')
    i = np.arange(T, dtype=np.float64)
    c = (overlap_end - i) / max(overlap_end - frozen_end + 1, 1)
    w = c * (np.expm1(c)) / (math.e - 1.0)
    w = np.where(i < frozen_end, 1.0, np.where(i < overlap_end, w, 0.0))
    return np.clip(w, 0.0, 1.0)


def guidance_weight(sqrt_a: float, sqrt_b: float, beta: float = BETA) -> tuple[float, float]:
    """(1 - tau) w s of the x0 update at a step with sqrt(alpha_bar) sqrt_a, sqrt(1-alpha_bar)
    sqrt_b: the factor of J_x^T (W * (Y - x0))."""
    s = sqrt_a + sqrt_b
    tau = sqrt_a / s
    if tau <= 0.0:
        return 0.0, tau
    r2 = (1 - tau) ** 2 / (tau ** 2 + (1 - tau) ** 2)
    w = beta if r2 <= 0 else min(beta, (1 - tau) / (tau * r2))
    return (1 - tau) * w * s, tau


def rtc_sample(loop, ctx, x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
               frozen: torch.Tensor, generator: torch.Generator | None = None,
               beta: float = BETA, guide=None) -> torch.Tensor:
    """The denoising loop with RTC guidance. loop: schedulers.DenoisingLoop whose denoiser is the
    step-conditioned U-Net (denoiser(x, k, ctx)); ctx: its conditioning of the observations; x
    (N, T, A) initial noise; target (N, T, A) the chunk in execution (normalised, at these
    times); weights (N, T) the soft mask (0 everywhere: the loop's own arithmetic, the same
    chunks); frozen (N, T) bool, the actions set to the target at the end; generator: the step
    noise of DDPM / consistency sampling; guide: the loop's x0 guide (guidance.guide.Guidance:
    constraint guidance after the RTC correction, at its steps). Returns the clean chunks
    (N, T, A), normalised."""
    if loop.prediction_type != 'epsilon':
        raise ValueError('RTC guidance here reads the network as an epsilon predictor')
    w3 = weights[..., None].to(x.dtype)
    for k in range(loop.num_steps):
        sa, sb = float(loop.sqrt_a[k]), float(loop.sqrt_b[k])
        with torch.inference_mode(False), torch.enable_grad():
            xr = x.detach().clone().requires_grad_(True)
            eps = loop.denoiser(xr, k, ctx)
            x0 = (xr - sb * eps) / sa
            if loop.kind == 'consistency':
                x0 = loop.c_skip[k] * xr + loop.c_out[k] * x0
            err = w3 * (target - x0)
            (g,) = torch.autograd.grad(x0, xr, grad_outputs=err.detach())
        factor, _ = guidance_weight(sa, sb, beta)
        x0, eps, move = x0.detach(), eps.detach(), factor * g
        if loop.clip:
            x0 = x0.clamp(-loop.clip_range, loop.clip_range)
        guided = (x0 + move).clamp(-loop.clip_range, loop.clip_range) if loop.clip else x0 + move
        if guide is not None:
            guided = guide(k, guided)
        # the epsilon that agrees with the guided x0, changed only by what the guidance moved
        # (no move: the network's epsilon, as DenoisingLoop.step uses it)
        eps = eps - (sa / sb) * (guided - x0)
        x0 = guided
        if k == loop.num_steps - 1:
            x = x0
        elif loop.kind == 'consistency':
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = loop.a_x0[k] * x0 + loop.sigma[k] * z
        elif loop.kind == 'ddpm':
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = loop.a_x0[k] * x0 + loop.a_x[k] * x.detach() + loop.sigma[k] * z
        else:                                                                # DDIM, eta 0
            x = loop.a_x0[k] * x0 + loop.a_eps[k] * eps
    return torch.where(frozen[..., None], target.to(x.dtype), x)
