"""DDPM training noise and DDIM / DDPM / consistency sampling in pure torch (ROS-free).

Written for export and graph capture: every per-step quantity (timestep, coefficients) is a
precomputed tensor, the K-step loop is a plain Python ``for`` over a fixed K, and nothing reads a
tensor value back to Python (no ``.item()``, no branch on data). The whole loop therefore traces
into one ONNX graph and captures into one CUDA graph.

Equal to diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` (timestep_spacing='leading',
steps_offset=0, eta=0, variance_type='fixed_small') within 1e-5: see test_schedulers.py.

Consistency sampling (a student distilled by training/distill.py): the network, read as an
epsilon predictor, gives the consistency function

    f(x, t) = c_skip(t) x + c_out(t) x0_hat(x, t),   c_skip = s^2 / ((10 t)^2 + s^2),
    c_out = 10 t / sqrt((10 t)^2 + s^2),   s = 0.5  (t on the 0..N-1 training grid)

(the latent consistency models' constants: the boundary condition f(x, 0) = x holds exactly, and
from t = 1 on f is the network's clean-chunk estimate to 0.3 %); one step maps pure noise at
t_max = 0.9 N (where DDIM-10 starts) to a clean chunk, each further step re-noises that chunk to a
lower t (fresh noise) and maps it again (multistep consistency sampling, Song et al. 2023,
Algorithm 1). Timesteps: 1 step [90], 2 [90, 45], 3 [90, 60, 30].
"""
from __future__ import annotations

import math
import torch
from torch import nn

from dp_policy.config import SchedulerConfig


def betas(cfg: SchedulerConfig) -> torch.Tensor:
    """(N,) float32 noise schedule, computed the way diffusers does."""
    n = cfg.num_train_timesteps
    if cfg.beta_schedule == 'linear':
        return torch.linspace(cfg.beta_start, cfg.beta_end, n, dtype=torch.float32)

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
                        dtype=torch.float32)


def alphas_cumprod(cfg: SchedulerConfig) -> torch.Tensor:
    """(N,) float32 alpha_bar_t."""
    return torch.cumprod(1.0 - betas(cfg), dim=0)


def inference_timesteps(cfg: SchedulerConfig, num_inference_steps: int | None = None) -> list[int]:
    """Descending timesteps, 'leading' spacing: 100 train / 10 steps -> [90, 80, ..., 0];
    consistency sampling from consistency_t_max: 1 step -> [90], 3 -> [90, 60, 30]."""
    k = num_inference_steps or cfg.num_inference_steps
    n = cfg.num_train_timesteps
    if not 1 <= k <= n:
        raise ValueError(f'num_inference_steps must be in [1, {n}], got {k}')
    if cfg.kind == 'consistency':
        top = consistency_t_max(n)
        return [int(round(top - i * top / k)) for i in range(k)]
    ratio = n // k
    return [i * ratio for i in range(k)][::-1]


def consistency_t_max(num_train_timesteps: int) -> int:
    """The noisiest timestep a consistency student maps from: 0.9 N, where DDIM-10 starts too
    (90 of 100). Higher, the epsilon reading is ill-conditioned: x0 = (x - sqrt(1-a) eps) /
    sqrt(a) multiplies the network's error by 1/sqrt(a) = 2000 at t = 99 of the cosine schedule,
    7 at t = 90."""
    return int(round(0.9 * num_train_timesteps))


CONSISTENCY_SIGMA_DATA = 0.5
CONSISTENCY_TIME_SCALE = 10.0


def consistency_coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip(t), c_out(t)) of the consistency function at training timesteps t (any shape)."""
    ts = t.float() * CONSISTENCY_TIME_SCALE
    s2 = CONSISTENCY_SIGMA_DATA ** 2
    return s2 / (ts ** 2 + s2), ts / torch.sqrt(ts ** 2 + s2)


class NoiseScheduler(nn.Module):
    """Training side: forward diffusion q(x_t | x_0) and the regression target."""

    def __init__(self, cfg: SchedulerConfig):
        super().__init__()
        self.cfg = cfg
        acp = alphas_cumprod(cfg)
        self.register_buffer('sqrt_acp', acp.sqrt(), persistent=False)                 # (N,)
        self.register_buffer('sqrt_one_minus_acp', (1 - acp).sqrt(), persistent=False)  # (N,)

    def sample_timesteps(self, n: int, device: torch.device | str = 'cpu',
                         generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.cfg.num_train_timesteps, (n,), device=device, generator=generator)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.sqrt_acp[t].reshape(-1, *([1] * (x0.dim() - 1)))                       # (B, 1, 1)
        s = self.sqrt_one_minus_acp[t].reshape(-1, *([1] * (x0.dim() - 1)))             # (B, 1, 1)
        return a * x0 + s * noise                                                         # (B, T, A)

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise if self.cfg.prediction_type == 'epsilon' else x0


class DenoisingLoop(nn.Module):
    """K reverse-diffusion steps from x_K ~ N(0, I) to x_0, with fixed per-step coefficient tensors.

    ``denoiser(x, t, cond) -> model output`` is the network (U-Net); ``cond`` is passed through.
    Per step k with t = timesteps[k]:
        x0_hat = clip((x - sqrt_b[k] * eps) / sqrt_a[k])   (epsilon prediction; or the output itself)
        DDIM:  x <- ax0[k] * x0_hat + aeps[k] * eps    (eta = 0)
        DDPM:  x <- ax0[k] * x0_hat + ax[k] * x + sigma[k] * z_k
        consistency: x0_hat <- c_skip[k] * x + c_out[k] * x0_hat (before the clip), then
               x <- ax0[k] * x0_hat + sigma[k] * z_k   (the next step's noise level; the last: x0_hat)
    """

    def __init__(self, denoiser: nn.Module, cfg: SchedulerConfig, num_inference_steps: int | None = None,
                 kind: str | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.kind = kind or cfg.kind
        if self.kind not in ('ddim', 'ddpm', 'consistency'):
            raise ValueError(f'unknown sampler kind {self.kind!r}')
        if self.kind == 'consistency' and cfg.prediction_type != 'epsilon':
            raise ValueError('consistency sampling reads the network as an epsilon predictor')
        self.prediction_type = cfg.prediction_type
        # guide(k, x0) -> x0: moves the predicted clean chunk (guidance.guide.Guidance); None for
        # the exported and captured graphs.
        self.guide = None
        self.clip = cfg.clip_sample
        self.clip_range = float(cfg.clip_sample_range)
        ts = inference_timesteps(cfg, num_inference_steps)
        self.num_steps = len(ts)
        # Coefficients in float32 with the same operations as diffusers, so that results agree to
        # float32 rounding even where 1/sqrt(alpha_bar) is large (first steps, many-step loops).
        acp = alphas_cumprod(cfg)                                                   # (N,) float32
        one = torch.tensor(1.0)
        final = one if (self.kind == 'ddpm' or cfg.set_alpha_to_one) else acp[0]
        sa, sb, ax0, aeps, ax, sig = [], [], [], [], [], []
        for i, t in enumerate(ts):
            a_t = acp[t]
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            a_prev = acp[prev] if prev >= 0 else final
            beta_t = 1 - a_t
            sa.append(a_t ** 0.5)
            sb.append(beta_t ** 0.5)
            if self.kind == 'consistency':     # re-noise the clean estimate to the next level
                ax0.append(a_prev ** 0.5 if prev >= 0 else one)
                sig.append((1 - a_prev) ** 0.5 if prev >= 0 else torch.tensor(0.0))
                aeps.append(torch.tensor(0.0))
                ax.append(torch.tensor(0.0))
            elif self.kind == 'ddim':
                ax0.append(a_prev ** 0.5)
                aeps.append((1 - a_prev) ** 0.5)
                ax.append(torch.tensor(0.0))
                sig.append(torch.tensor(0.0))
            else:
                cur_alpha = a_t / a_prev
                cur_beta = 1 - cur_alpha
                ax0.append((a_prev ** 0.5 * cur_beta) / beta_t)
                ax.append(cur_alpha ** 0.5 * (1 - a_prev) / beta_t)
                var = torch.clamp((1 - a_prev) / beta_t * cur_beta, min=1e-20)
                sig.append(var ** 0.5 if t > 0 else torch.tensor(0.0))
                aeps.append(torch.tensor(0.0))
        self.register_buffer('timesteps', torch.tensor(ts, dtype=torch.float32), persistent=False)  # (K,)
        for name, vals in (('sqrt_a', sa), ('sqrt_b', sb), ('a_x0', ax0), ('a_eps', aeps), ('a_x', ax),
                           ('sigma', sig)):
            self.register_buffer(name, torch.stack(vals).float(), persistent=False)            # (K,)
        c_skip, c_out = consistency_coefficients(torch.tensor(ts))
        self.register_buffer('c_skip', c_skip.float(), persistent=False)                       # (K,)
        self.register_buffer('c_out', c_out.float(), persistent=False)                         # (K,)

    @property
    def stochastic(self) -> bool:
        """Each step past the first draws fresh noise (DDPM, multistep consistency)."""
        return self.kind in ('ddpm', 'consistency')

    def step(self, k: int, x: torch.Tensor, out: torch.Tensor,
             step_noise: torch.Tensor | None = None) -> torch.Tensor:
        """One reverse step k (python int) given the network output ``out`` for x."""
        if self.prediction_type == 'epsilon':
            eps = out                                                          # (N, T, A)
            x0 = (x - self.sqrt_b[k] * out) / self.sqrt_a[k]                   # (N, T, A)
        else:
            x0 = out                                                           # (N, T, A)
            eps = (x - self.sqrt_a[k] * out) / self.sqrt_b[k]                  # (N, T, A)
        if self.kind == 'consistency':
            x0 = self.c_skip[k] * x + self.c_out[k] * x0                       # (N, T, A)
        if self.clip:
            x0 = x0.clamp(-self.clip_range, self.clip_range)                   # (N, T, A)
        if self.guide is not None:     # guided sampling (dp_policy.guidance); eager torch only
            x0 = self.guide(k, x0)                                             # (N, T, A)
        if self.kind == 'ddim':
            return self.a_x0[k] * x0 + self.a_eps[k] * eps                     # (N, T, A)
        if self.kind == 'consistency':
            x = self.a_x0[k] * x0                                              # (N, T, A)
            if step_noise is not None and k + 1 < self.num_steps:
                x = x + self.sigma[k] * step_noise                             # (N, T, A)
            return x
        x = self.a_x0[k] * x0 + self.a_x[k] * x                                # (N, T, A)
        if step_noise is not None:
            x = x + self.sigma[k] * step_noise                                 # (N, T, A)
        return x

    def forward(self, x: torch.Tensor, cond: torch.Tensor,
                step_noise: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, T, A) initial noise; cond: (N, G); step_noise (K, N, T, A) for DDPM and
        consistency sampling (random if None).

        A denoiser with a ``condition`` method (fast_unet.StepConditionedUnet, specialised to these
        timesteps) is conditioned once and then called with the step index instead of the timestep.
        """
        n = x.shape[0]
        ctx = self.denoiser.condition(cond) if hasattr(self.denoiser, 'condition') else None
        for k in range(self.num_steps):
            if ctx is not None:
                out = self.denoiser(x, k, ctx)                                 # (N, T, A)
            else:
                out = self.denoiser(x, self.timesteps[k].expand(n), cond)      # (N, T, A)
            z = None
            if self.stochastic:
                z = step_noise[k] if step_noise is not None else torch.randn_like(x)
            x = self.step(k, x, out, z)                                        # (N, T, A)
        return x

