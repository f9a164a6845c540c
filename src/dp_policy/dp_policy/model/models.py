"""The learned part of a policy: observation encoder + action head, and its training loss (ROS-free).

* ``DiffusionModel``  - observation encoder + ConditionalUnet1D denoiser (Diffusion Policy).
* ``RegressionModel`` - the same observation encoder + an MLP that predicts the normalised action
                        chunk directly, trained with MSE: the baseline the paper compares against
                        (it averages multimodal demonstrations instead of picking a mode).

``build_model`` picks one from ``ModelConfig.kind``. Everything that has weights lives here, so one
``state_dict`` is the whole learned policy. Normalisation statistics, schedules and sample selection
live elsewhere (data/normalizer.py, sampling/schedulers.py, policy.py). Inputs are already normalised (state,
action in [-1, 1]); images are uint8 and normalised inside the encoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dp_policy.config import ModelConfig, VisionConfig
from dp_policy.model.encoders import ObservationEncoder
from dp_policy.model.unet import ConditionalUnet1D
from dp_policy.sampling.schedulers import NoiseScheduler


class _ObservationConditioned(nn.Module):
    """The part both models share: the observation encoder and the size of what it gives
    (n_obs_steps x per-step features), which conditions the head."""

    def __init__(self, state_dim: int, action_dim: int, camera_names: list[str],
                 image_hw: tuple[int, int] | None, model_cfg: ModelConfig, vision_cfg: VisionConfig):
        super().__init__()
        self.model_cfg = model_cfg
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.camera_names = list(camera_names)
        self.obs_encoder = ObservationEncoder(state_dim, self.camera_names, image_hw, vision_cfg)
        self.cond_dim = model_cfg.n_obs_steps * self.obs_encoder.per_step_dim


class DiffusionModel(_ObservationConditioned):
    kind = 'diffusion'

    def __init__(self, state_dim: int, action_dim: int, camera_names: list[str],
                 image_hw: tuple[int, int] | None, model_cfg: ModelConfig, vision_cfg: VisionConfig):
        super().__init__(state_dim, action_dim, camera_names, image_hw, model_cfg, vision_cfg)
        self.unet = ConditionalUnet1D(action_dim, self.cond_dim, model_cfg)

    def encode(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """state (B, To, S) normalised, images {cam: (B, To, H, W, 3) uint8} -> (B, G)."""
        return self.obs_encoder(state, images)

    def loss(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None, action: torch.Tensor,
             noise_scheduler: NoiseScheduler | None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoising loss for one batch: state (B, To, S), action (B, T, A), both normalised."""
        cond = self.encode(state, images)                                          # (B, G)
        noise = torch.randn(action.shape, device=action.device, generator=generator)  # (B, T, A)
        t = noise_scheduler.sample_timesteps(action.shape[0], action.device, generator)  # (B,)
        noisy = noise_scheduler.add_noise(action, noise, t)                        # (B, T, A)
        pred = self.unet(noisy, t, cond)                                           # (B, T, A)
        return F.mse_loss(pred, noise_scheduler.target(action, noise))


class RegressionModel(_ObservationConditioned):
    """MSE baseline: the same observation encoder, an MLP head -> the whole normalised chunk."""

    kind = 'regression'

    def __init__(self, state_dim: int, action_dim: int, camera_names: list[str],
                 image_hw: tuple[int, int] | None, model_cfg: ModelConfig, vision_cfg: VisionConfig):
        super().__init__(state_dim, action_dim, camera_names, image_hw, model_cfg, vision_cfg)
        g, h = self.cond_dim, model_cfg.regression_hidden
        self.head = nn.Sequential(nn.Linear(g, h), nn.Mish(), nn.Linear(h, h), nn.Mish(),
                                  nn.Linear(h, model_cfg.horizon * action_dim))

    def encode(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.obs_encoder(state, images)                                     # (B, G)

    def predict_chunk(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, G) -> (B, T, A) normalised actions."""
        return self.head(cond).unflatten(1, (self.model_cfg.horizon, self.action_dim))

    def loss(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None, action: torch.Tensor,
             noise_scheduler: NoiseScheduler | None = None, generator: torch.Generator | None = None
             ) -> torch.Tensor:
        return F.mse_loss(self.predict_chunk(self.encode(state, images)), action)


MODEL_KINDS = {'diffusion': DiffusionModel, 'regression': RegressionModel}


def build_model(state_dim: int, action_dim: int, camera_names: list[str], image_hw: tuple[int, int] | None,
                model_cfg: ModelConfig, vision_cfg: VisionConfig) -> DiffusionModel | RegressionModel:
    """The model class named by ``model_cfg.kind``, randomly initialised."""
    return MODEL_KINDS[model_cfg.kind](state_dim, action_dim, camera_names, image_hw, model_cfg, vision_cfg)
