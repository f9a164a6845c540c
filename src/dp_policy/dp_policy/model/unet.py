"""ConditionalUnet1D: the denoising network of the CNN-based Diffusion Policy (Chi et al. 2023).

A 1D temporal convolutional U-Net over the action sequence. Every residual block is conditioned on
one global vector (observation features + a sinusoidal embedding of the diffusion step) through FiLM:
a per-channel scale and bias (or bias only) predicted from that vector. GroupNorm + Mish throughout.

This file is only the network: no noise schedule, no observation encoding, no normalisation.
Shapes: B batch, T horizon (time), A action dim, C channels, G global-condition dim.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from dp_policy.config import ModelConfig


class SinusoidalPosEmb(nn.Module):
    """Transformer-style sinusoidal embedding of the (float) diffusion step."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
        self.register_buffer('freqs', freqs, persistent=False)   # (dim/2,)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()[:, None] * self.freqs[None, :]           # (B, dim/2)
        return torch.cat((x.sin(), x.cos()), dim=-1)            # (B, dim)


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish, same length."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, c_out),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)                                    # (B, C_in, T) -> (B, C_out, T)


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks with FiLM conditioning between them, plus a residual connection."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int,
                 cond_predict_scale: bool):
        super().__init__()
        self.blocks = nn.ModuleList([
            Conv1dBlock(c_in, c_out, kernel_size, n_groups),
            Conv1dBlock(c_out, c_out, kernel_size, n_groups),
        ])
        self.c_out = c_out
        self.cond_predict_scale = cond_predict_scale
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, c_out * 2 if cond_predict_scale else c_out))
        self.residual_conv = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](x)                                 # (B, C_out, T)
        embed = self.cond_encoder(cond)                         # (B, 2*C_out) or (B, C_out)
        if self.cond_predict_scale:
            scale = embed[:, :self.c_out, None]                 # (B, C_out, 1)
            bias = embed[:, self.c_out:, None]                  # (B, C_out, 1)
            out = scale * out + bias                            # (B, C_out, T)
        else:
            out = out + embed[:, :, None]                       # (B, C_out, T)
        out = self.blocks[1](out)                               # (B, C_out, T)
        return out + self.residual_conv(x)                      # (B, C_out, T)


class Downsample1d(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)                                     # (B, C, T) -> (B, C, T/2)


class Upsample1d(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(dim, dim, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)                                     # (B, C, T) -> (B, C, 2T)


class ConditionalUnet1D(nn.Module):
    """eps_theta(x_k, k, obs_features): predicts the noise (or the clean sample) of an action chunk."""

    def __init__(self, action_dim: int, global_cond_dim: int, cfg: ModelConfig):
        super().__init__()
        dims = [action_dim, *cfg.down_dims]
        in_out = list(zip(dims[:-1], dims[1:]))
        dsed = cfg.step_embed_dim
        self.diffusion_step_encoder = nn.Sequential(
            SinusoidalPosEmb(dsed), nn.Linear(dsed, dsed * 4), nn.Mish(), nn.Linear(dsed * 4, dsed))
        cond_dim = dsed + global_cond_dim
        k, g, s = cfg.kernel_size, cfg.n_groups, cfg.cond_predict_scale

        def res(c_in: int, c_out: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(c_in, c_out, cond_dim, k, g, s)

        self.down_modules = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            self.down_modules.append(nn.ModuleList([
                res(c_in, c_out), res(c_out, c_out), Downsample1d(c_out) if not last else nn.Identity()]))
        mid = cfg.down_dims[-1]
        self.mid_modules = nn.ModuleList([res(mid, mid), res(mid, mid)])
        self.up_modules = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            self.up_modules.append(nn.ModuleList([
                res(c_out * 2, c_in), res(c_in, c_in), Upsample1d(c_in)]))
        start = cfg.down_dims[0]
        self.final_conv = nn.Sequential(Conv1dBlock(start, start, k, g), nn.Conv1d(start, action_dim, 1))
        self.action_dim = action_dim
        self.global_cond_dim = global_cond_dim

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        """sample (B, T, A), timestep (B,) float or int, global_cond (B, G) -> (B, T, A)."""
        x = sample.transpose(1, 2)                                          # (B, A, T)
        step = self.diffusion_step_encoder(timestep)                        # (B, dsed)
        cond = torch.cat([step, global_cond], dim=-1)                       # (B, dsed + G)
        skips = []
        for res1, res2, down in self.down_modules:
            x = res1(x, cond)                                               # (B, C_l, T_l)
            x = res2(x, cond)                                               # (B, C_l, T_l)
            skips.append(x)
            x = down(x)                                                     # (B, C_l, T_l/2) (not last)
        for res_mid in self.mid_modules:
            x = res_mid(x, cond)                                            # (B, C_last, T_last)
        for res1, res2, up in self.up_modules:
            x = torch.cat((x, skips.pop()), dim=1)                          # (B, 2*C_l, T_l)
            x = res1(x, cond)                                               # (B, C_{l-1}, T_l)
            x = res2(x, cond)                                               # (B, C_{l-1}, T_l)
            x = up(x)                                                       # (B, C_{l-1}, 2*T_l)
        x = self.final_conv(x)                                              # (B, A, T)
        return x.transpose(1, 2)                                            # (B, T, A)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
