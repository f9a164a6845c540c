"""Configuration dataclasses of the Diffusion Policy core (ROS-free).

One dataclass per concern, each validated in ``__post_init__``:

* ``ModelConfig``     - the 1D temporal U-Net and the observation/action time windows.
* ``VisionConfig``    - the per-camera image encoder (ResNet-18 with GroupNorm or a small CNN).
* ``SchedulerConfig`` - DDPM training noise and DDIM (or DDPM) inference.
* ``TrainConfig``     - optimisation (AdamW, cosine schedule with warmup, EMA, seed, logging).

Two presets bundle them: ``cpu_default()`` (a small U-Net 64/128/256 that runs a chunk in ~10 ms on
2 CPU cores) and ``paper()`` (Chi et al. 2023: U-Net 256/512/1024, kernel 5, 2 obs steps, horizon 16,
8 executed steps). This module is not the ROS parameter layer: nodes map their parameters onto it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _tuple_int(value: Any, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except TypeError as exc:  # not iterable
        raise ValueError(f'{name} must be a sequence of ints, got {value!r}') from exc
    return out


@dataclass
class ModelConfig:
    """The denoising network (ConditionalUnet1D) and the time windows it works on.

    Time windows (in steps of the dataset's dt_s), for n_obs_steps=2, horizon=16, n_action_steps=8:
    the policy sees observations at t-1, t and predicts actions for t-1 ... t+14; actions
    t ... t+7 are executed (index n_obs_steps-1 of the chunk is "now").
    """

    horizon: int = 16                 # actions predicted per chunk (T_p in the paper)
    n_obs_steps: int = 2              # observation steps the policy is conditioned on (T_o)
    n_action_steps: int = 8           # actions meant to be executed from each chunk (T_a)
    down_dims: tuple[int, ...] = (64, 128, 256)   # channels per U-Net level
    kernel_size: int = 5              # temporal convolution kernel
    step_embed_dim: int = 256         # diffusion step embedding size (sinusoidal -> MLP)
    n_groups: int = 8                 # GroupNorm groups in every conv block
    cond_predict_scale: bool = True   # FiLM: per-channel scale and bias (True) or bias only
    kind: str = 'diffusion'           # 'diffusion' (the policy) or 'regression' (MSE baseline: same
                                      # observation encoder, an MLP predicts the chunk directly)
    regression_hidden: int = 512      # regression baseline only: MLP hidden width

    def __post_init__(self) -> None:
        if self.kind not in ('diffusion', 'regression'):
            raise ValueError(f"model kind must be 'diffusion' or 'regression', got {self.kind!r}")
        if self.regression_hidden < 1:
            raise ValueError(f'regression_hidden must be >= 1, got {self.regression_hidden}')
        self.down_dims = _tuple_int(self.down_dims, 'down_dims')
        if len(self.down_dims) < 1 or any(d <= 0 for d in self.down_dims):
            raise ValueError(f'down_dims must be positive channel counts, got {self.down_dims}')
        for d in self.down_dims:
            if d % self.n_groups:
                raise ValueError(f'n_groups={self.n_groups} must divide every down_dims entry, '
                                 f'{d} is not divisible')
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd and positive (same padding), got {self.kernel_size}')
        if self.n_obs_steps < 1:
            raise ValueError(f'n_obs_steps must be >= 1, got {self.n_obs_steps}')
        if self.horizon < 1:
            raise ValueError(f'horizon must be >= 1, got {self.horizon}')
        # The U-Net halves the time axis len(down_dims)-1 times and doubles it back; the skip
        # connections only line up when the horizon is divisible by that factor.
        factor = 2 ** (len(self.down_dims) - 1)
        if self.horizon % factor:
            raise ValueError(f'horizon={self.horizon} must be divisible by 2**(len(down_dims)-1)'
                             f'={factor} for the U-Net down/upsampling')
        if self.n_action_steps < 1:
            raise ValueError(f'n_action_steps must be >= 1, got {self.n_action_steps}')
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(f'n_obs_steps-1+n_action_steps={self.n_obs_steps - 1 + self.n_action_steps} '
                             f'exceeds horizon={self.horizon}: executed actions must lie in the chunk')
        if self.step_embed_dim < 2 or self.step_embed_dim % 2:
            raise ValueError(f'step_embed_dim must be even and >= 2, got {self.step_embed_dim}')


@dataclass
class VisionConfig:
    """Per-camera image encoder: each camera has its own encoder (weights not shared)."""

    encoder: str = 'small_cnn'        # 'resnet18' (GroupNorm, the paper's) or 'small_cnn' (4 convs, CPU)
    crop_ratio: float = 0.9           # crop side = round(ratio * side) of image_hw; random in training,
                                      # centre at inference (paper: 84 of 96 = 0.875)
    num_keypoints: int = 32           # spatial-softmax keypoints (each gives x, y)
    feature_dim: int = 64             # per-camera feature size after the keypoint projection
    small_cnn_channels: tuple[int, ...] = (32, 64, 64, 64)  # channels of the small CNN's convs
    small_cnn_strides: tuple[int, ...] = (2, 2, 1, 1)       # their strides (one per conv)

    def __post_init__(self) -> None:
        if self.encoder not in ('resnet18', 'small_cnn'):
            raise ValueError(f"vision encoder must be 'resnet18' or 'small_cnn', got {self.encoder!r}")
        if not 0.1 <= self.crop_ratio <= 1.0:
            raise ValueError(f'crop_ratio must be in [0.1, 1], got {self.crop_ratio}')
        if self.num_keypoints < 1 or self.feature_dim < 1:
            raise ValueError('num_keypoints and feature_dim must be >= 1')
        self.small_cnn_channels = _tuple_int(self.small_cnn_channels, 'small_cnn_channels')
        if len(self.small_cnn_channels) < 1 or any(c < 8 or c % 8 for c in self.small_cnn_channels):
            raise ValueError(f'small_cnn_channels must be multiples of 8 (GroupNorm), got '
                             f'{self.small_cnn_channels}')
        self.small_cnn_strides = _tuple_int(self.small_cnn_strides, 'small_cnn_strides')
        if len(self.small_cnn_strides) != len(self.small_cnn_channels) or \
                any(s < 1 for s in self.small_cnn_strides):
            raise ValueError(f'small_cnn_strides {self.small_cnn_strides} must be positive, one per '
                             f'entry of small_cnn_channels {self.small_cnn_channels}')

    def crop_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Crop size for images of size image_hw."""
        h, w = int(image_hw[0]), int(image_hw[1])
        return max(8, round(self.crop_ratio * h)), max(8, round(self.crop_ratio * w))


@dataclass
class SchedulerConfig:
    """Diffusion noise schedule (training) and the sampler used at inference."""

    kind: str = 'ddim'                 # inference sampler: 'ddim' (deterministic, few steps), 'ddpm' or
                                       # 'consistency' (a distilled student, 1-3 steps: dp_train distill)
    num_train_timesteps: int = 100
    beta_schedule: str = 'squaredcos_cap_v2'   # or 'linear'
    beta_start: float = 1e-4           # only for 'linear'
    beta_end: float = 2e-2             # only for 'linear'
    prediction_type: str = 'epsilon'   # network predicts the noise ('epsilon') or the clean sample ('sample')
    clip_sample: bool = True           # clamp the predicted clean sample to [-clip_sample_range, +range]
    clip_sample_range: float = 1.0
    num_inference_steps: int = 10      # denoising steps at inference (DDIM); DDPM uses up to num_train_timesteps
    set_alpha_to_one: bool = True      # DDIM: the last step goes to alpha_bar=1 (diffusers' default)

    def __post_init__(self) -> None:
        if self.kind not in ('ddim', 'ddpm', 'consistency'):
            raise ValueError(f"scheduler kind must be 'ddim', 'ddpm' or 'consistency', got "
                             f'{self.kind!r}')
        if self.beta_schedule not in ('squaredcos_cap_v2', 'linear'):
            raise ValueError(f"beta_schedule must be 'squaredcos_cap_v2' or 'linear', got {self.beta_schedule!r}")
        if self.prediction_type not in ('epsilon', 'sample'):
            raise ValueError(f"prediction_type must be 'epsilon' or 'sample', got {self.prediction_type!r}")
        if self.num_train_timesteps < 2:
            raise ValueError(f'num_train_timesteps must be >= 2, got {self.num_train_timesteps}')
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError(f'num_inference_steps must be in [1, num_train_timesteps='
                             f'{self.num_train_timesteps}], got {self.num_inference_steps}')
        if self.clip_sample_range <= 0:
            raise ValueError('clip_sample_range must be > 0')


PRECISIONS = ('fp32', 'bf16', 'auto')


@dataclass
class TrainConfig:
    """Optimisation settings (paper: AdamW lr 1e-4, wd 1e-6, 500 warmup steps, EMA)."""

    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500
    steps: int = 20000
    ema_decay: float = 0.9999          # max EMA decay; warms up as (1+step)/(10+step) (diffusion_policy)
    ema_min_decay: float = 0.0
    grad_clip_norm: float = 0.0        # 0 = off
    seed: int = 0
    checkpoint_every: int = 1000       # steps between checkpoints (deployable + resume state)
    log_every: int = 50                # steps between loss-curve rows
    max_minutes: float = 0.0           # wall-clock budget (0 = none); the cosine schedule then decays
                                       # over whichever of `steps` and the budget ends first
    # 'fp32', 'bf16' (autocast: matmuls and convolutions in bfloat16, weights and optimiser in
    # float32) or 'auto' (bf16 where the hardware computes it natively: x86 CPUs with AVX512-BF16
    # or AMX, CUDA GPUs with bf16 support; else fp32). Inference is float32 either way.
    precision: str = 'fp32'
    # Held-out evaluation: this many episodes (chosen by seed) are kept out of training; every
    # eval_every steps and at the end the EMA policy samples chunks on them (DDIM, as deployed) and
    # is scored by the executed steps' RMSE plus mode coverage (holdout.py); policy.ckpt is the best
    # scored one, not the last. 0 = off (policy.ckpt is the last).
    holdout_episodes: int = 0
    eval_every: int = 500

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if not self.max_minutes >= 0:
            raise ValueError(f'max_minutes must be >= 0, got {self.max_minutes}')
        if self.batch_size < 1 or self.steps < 0 or self.warmup_steps < 0:
            raise ValueError('batch_size must be >= 1, steps and warmup_steps >= 0')
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError('lr must be > 0 and weight_decay >= 0')
        if not 0.0 <= self.ema_decay < 1.0 or not 0.0 <= self.ema_min_decay <= self.ema_decay:
            raise ValueError('need 0 <= ema_min_decay <= ema_decay < 1')
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError('checkpoint_every and log_every must be >= 1')
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {self.precision!r}')
        if self.holdout_episodes < 0 or self.eval_every < 1:
            raise ValueError('holdout_episodes must be >= 0 and eval_every >= 1')


@dataclass
class PresetConfigs:
    """The four configs that make one policy."""

    model: ModelConfig = field(default_factory=ModelConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def cpu_default() -> PresetConfigs:
    """Small U-Net (64/128/256, ~5 M parameters), small CNN for images: fits a 2-core CPU."""
    return PresetConfigs(
        model=ModelConfig(down_dims=(64, 128, 256), kernel_size=5, step_embed_dim=256,
                          horizon=16, n_obs_steps=2, n_action_steps=8),
        # 96 -> 88 random crop, 4 x 32-channel convs (88 -> 44 -> 22 -> 11 -> 11) + 32 keypoints:
        # ~34k parameters per camera, ~17 MFLOP per image
        vision=VisionConfig(encoder='small_cnn', crop_ratio=0.92, small_cnn_channels=(32, 32, 32, 32),
                            small_cnn_strides=(2, 2, 2, 1)),
        scheduler=SchedulerConfig(),
        # bf16 where the CPU has it natively (2x the steps per second here); 10 of the episodes
        # held out to keep the best checkpoint (evaluated every 500 steps, ~5 s each).
        train=TrainConfig(batch_size=64, lr=1e-3, warmup_steps=200, steps=5000, ema_decay=0.999,
                          precision='auto', holdout_episodes=10, eval_every=500),
    )


def paper() -> PresetConfigs:
    """Chi et al. 2023, CNN-based Diffusion Policy: U-Net 256/512/1024, ResNet-18 (GroupNorm)."""
    return PresetConfigs(
        model=ModelConfig(down_dims=(256, 512, 1024), kernel_size=5, step_embed_dim=256,
                          horizon=16, n_obs_steps=2, n_action_steps=8),
        vision=VisionConfig(encoder='resnet18', crop_ratio=0.875),
        scheduler=SchedulerConfig(),
        train=TrainConfig(batch_size=64, lr=1e-4, weight_decay=1e-6, warmup_steps=500, steps=200000,
                          ema_decay=0.9999),
    )


def tiny() -> PresetConfigs:
    """A very small network for tests (seconds to build, train and run); not for real tasks."""
    return PresetConfigs(
        model=ModelConfig(down_dims=(16, 32), kernel_size=3, step_embed_dim=16, n_groups=4,
                          horizon=16, n_obs_steps=2, n_action_steps=8),
        vision=VisionConfig(encoder='small_cnn', num_keypoints=8, feature_dim=16,
                            small_cnn_channels=(16, 16, 16, 16), small_cnn_strides=(2, 2, 1, 1)),
        scheduler=SchedulerConfig(),
        train=TrainConfig(batch_size=32, lr=1e-3, warmup_steps=10, steps=100, ema_decay=0.99,
                          checkpoint_every=50, log_every=10),
    )


PRESETS = {'cpu_default': cpu_default, 'paper': paper, 'tiny': tiny}


def preset(name: str) -> PresetConfigs:
    """A preset by name ('cpu_default' or 'paper')."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f'unknown preset {name!r}; choose one of {sorted(PRESETS)}') from None


def to_dict(cfg: Any) -> dict:
    """A config dataclass as a plain dict (tuples become lists: weights_only-safe, YAML-friendly)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v
    return {k: plain(v) for k, v in asdict(cfg).items()}


def from_dict(cls: type, data: dict) -> Any:
    """Build config ``cls`` from a dict; unknown keys are an error (they signal a format mismatch)."""
    if not isinstance(data, dict):
        raise ValueError(f'{cls.__name__}: expected a dict, got {type(data).__name__}')
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f'{cls.__name__}: unknown keys {unknown}')
    return cls(**data)
