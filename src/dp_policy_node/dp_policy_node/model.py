"""DiffusionModel: observation encoder + ConditionalUnet1D, and the training loss (ROS-free).

Everything that has weights lives here, so that one ``state_dict`` is the whole learned policy.
Normalisation statistics, schedules and sample selection live elsewhere (normalizer.py,
schedulers.py, policy.py). Inputs are already normalised (state, action in [-1, 1]); images are
uint8 and normalised inside the encoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, VisionConfig
from .encoders import ObservationEncoder
from .network import ConditionalUnet1D
from .schedulers import NoiseScheduler


class DiffusionModel(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, camera_names: list[str],
                 image_hw: tuple[int, int] | None, model_cfg: ModelConfig, vision_cfg: VisionConfig):
        super().__init__()
        self.model_cfg = model_cfg
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.camera_names = list(camera_names)
        self.obs_encoder = ObservationEncoder(state_dim, self.camera_names, image_hw, vision_cfg)
        global_cond_dim = model_cfg.n_obs_steps * self.obs_encoder.per_step_dim
        self.unet = ConditionalUnet1D(action_dim, global_cond_dim, model_cfg)

    def encode(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """state (B, To, S) normalised, images {cam: (B, To, H, W, 3) uint8} -> (B, G)."""
        return self.obs_encoder(state, images)

    def loss(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None, action: torch.Tensor,
             noise_scheduler: NoiseScheduler, generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoising loss for one batch: state (B, To, S), action (B, T, A), both normalised."""
        cond = self.encode(state, images)                                          # (B, G)
        noise = torch.randn(action.shape, device=action.device, generator=generator)  # (B, T, A)
        t = noise_scheduler.sample_timesteps(action.shape[0], action.device, generator)  # (B,)
        noisy = noise_scheduler.add_noise(action, noise, t)                        # (B, T, A)
        pred = self.unet(noisy, t, cond)                                           # (B, T, A)
        return F.mse_loss(pred, noise_scheduler.target(action, noise))
