"""Deployable checkpoints: one plain dict, saved with torch.save, loaded with weights_only=True.

The file carries everything a node needs to run the policy: configs (as dicts), normaliser
statistics (lists), EMA weights (and optionally the raw weights), joint and camera names, image
size, time step, window sizes, the dataset fingerprint and the number of training steps. It is
never a pickled training object; the optimiser state for resuming lives in a separate file
(trainer.py). Any problem while loading raises ``CheckpointError`` naming what is wrong.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dp_policy.config import ModelConfig, SchedulerConfig, TrainConfig, VisionConfig, from_dict, to_dict
from dp_policy.config import preset as get_preset
from dp_policy.model.models import DiffusionModel, RegressionModel, build_model
from dp_policy.data.normalizer import MinMaxNormalizer

FORMAT_VERSION = 1
REQUIRED_KEYS = ('format_version', 'model_config', 'vision_config', 'scheduler_config', 'train_config',
                 'normalizer', 'state_dict', 'joint_names', 'camera_names', 'image_hw', 'dt_s',
                 'n_obs_steps', 'horizon', 'n_action_steps', 'state_dim', 'action_dim', 'fingerprint',
                 'train_steps')


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message says which file and why."""


@dataclass
class Checkpoint:
    """A validated checkpoint, configs parsed."""

    model_cfg: ModelConfig
    vision_cfg: VisionConfig
    sched_cfg: SchedulerConfig
    train_cfg: TrainConfig
    state_normalizer: MinMaxNormalizer
    action_normalizer: MinMaxNormalizer
    joint_names: list[str]
    camera_names: list[str]
    image_hw: tuple[int, int] | None
    dt_s: float
    state_dict: dict[str, torch.Tensor]
    raw_state_dict: dict[str, torch.Tensor] | None = None
    fingerprint: str = ''
    train_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = ''

    @property
    def action_space(self) -> dict | None:
        """None (joint positions), or the end-effector space it observes and acts in
        (dp_common.ee_space.EndEffectorSpace.to_dict(): kind 'ee_pose', URDF, tip, joints)."""
        return self.extra.get('action_space')

    @property
    def robot_mask(self) -> dict | None:
        """None, or {camera: dp_common.robot_mask.mask_spec}: it was trained on images with the
        robot painted out, and must be given them so (policy node)."""
        return self.extra.get('robot_mask') or None

    @property
    def state_dim(self) -> int:
        return self.state_normalizer.dim

    @property
    def action_dim(self) -> int:
        return self.action_normalizer.dim

    def new_model(self) -> DiffusionModel | RegressionModel:
        """A fresh (randomly initialised) model of this checkpoint's architecture and kind."""
        return build_model(self.state_dim, self.action_dim, self.camera_names, self.image_hw,
                              self.model_cfg, self.vision_cfg)

    def build_model(self, ema: bool = True) -> DiffusionModel | RegressionModel:
        """The model with the EMA (default) or raw weights, in eval mode."""
        model = self.new_model()
        sd = self.state_dict if ema or self.raw_state_dict is None else self.raw_state_dict
        _load_weights(model, sd, self.path)
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        d = {
            'format_version': FORMAT_VERSION,
            'model_config': to_dict(self.model_cfg),
            'vision_config': to_dict(self.vision_cfg),
            'scheduler_config': to_dict(self.sched_cfg),
            'train_config': to_dict(self.train_cfg),
            'normalizer': {'state': self.state_normalizer.state_dict(),
                           'action': self.action_normalizer.state_dict()},
            'state_dict': {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()},
            'joint_names': list(self.joint_names),
            'camera_names': list(self.camera_names),
            'image_hw': list(self.image_hw) if self.image_hw is not None else None,
            'dt_s': float(self.dt_s),
            'n_obs_steps': self.model_cfg.n_obs_steps,
            'horizon': self.model_cfg.horizon,
            'n_action_steps': self.model_cfg.n_action_steps,
            'state_dim': self.state_dim,
            'action_dim': self.action_dim,
            'fingerprint': str(self.fingerprint),
            'train_steps': int(self.train_steps),
        }
        if self.raw_state_dict is not None:
            d['raw_state_dict'] = {k: v.detach().cpu().contiguous() for k, v in self.raw_state_dict.items()}
        d.update(self.extra)
        return d

    def save(self, path: str | os.PathLike) -> str:
        """Atomic write (temp file + rename): a crash never leaves a half-written checkpoint."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.to_dict(), path)
        return str(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temp file in the same folder + rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_weights(model: torch.nn.Module, sd: dict, where: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(f'{where}: weights do not match the architecture in its configs: '
                              f'missing {missing[:5]}{"..." if len(missing) > 5 else ""}, '
                              f'unexpected {unexpected[:5]}{"..." if len(unexpected) > 5 else ""}')
    for k, v in own.items():
        if not isinstance(sd[k], torch.Tensor):
            raise CheckpointError(f'{where}: weight {k} is {type(sd[k]).__name__}, not a tensor')
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f'{where}: shape mismatch for {k}: checkpoint {tuple(sd[k].shape)}, '
                                  f'model {tuple(v.shape)}')
    model.load_state_dict(sd, strict=True)


def from_dict_checked(d: Any, where: str = '<dict>') -> Checkpoint:
    """Validate a loaded checkpoint dict and parse it."""
    if not isinstance(d, dict):
        raise CheckpointError(f'{where}: not a dp_policy checkpoint (top level is '
                              f'{type(d).__name__}, expected dict)')
    if 'format_version' not in d:
        raise CheckpointError(f'{where}: not a dp_policy checkpoint (no format_version key)')
    if d['format_version'] != FORMAT_VERSION:
        raise CheckpointError(f'{where}: unsupported checkpoint format_version {d["format_version"]!r} '
                              f'(this code reads version {FORMAT_VERSION})')
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise CheckpointError(f'{where}: checkpoint is missing keys {missing}')
    try:
        model_cfg = from_dict(ModelConfig, dict(d['model_config']))
        vision_cfg = from_dict(VisionConfig, dict(d['vision_config']))
        sched_cfg = from_dict(SchedulerConfig, dict(d['scheduler_config']))
        train_cfg = from_dict(TrainConfig, dict(d['train_config']))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f'{where}: invalid config in checkpoint: {exc}') from exc
    try:
        state_norm = MinMaxNormalizer.from_state_dict(d['normalizer']['state'])
        action_norm = MinMaxNormalizer.from_state_dict(d['normalizer']['action'])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f'{where}: invalid normalizer stats: {exc}') from exc
    joint_names = list(d['joint_names'])
    camera_names = list(d['camera_names'])
    if not joint_names or not all(isinstance(j, str) for j in joint_names):
        raise CheckpointError(f'{where}: joint_names must be a non-empty list of strings')
    if len(set(joint_names)) != len(joint_names) or len(set(camera_names)) != len(camera_names):
        raise CheckpointError(f'{where}: duplicate joint or camera names')
    if state_norm.dim != d['state_dim'] or action_norm.dim != d['action_dim']:
        raise CheckpointError(f'{where}: normalizer dims (state {state_norm.dim}, action {action_norm.dim}) '
                              f'do not match state_dim {d["state_dim"]} / action_dim {d["action_dim"]}')
    space = d.get('action_space')
    if space is None:
        if d['state_dim'] != len(joint_names) or d['action_dim'] != len(joint_names):
            raise CheckpointError(f'{where}: {len(joint_names)} joint_names but state_dim '
                                  f'{d["state_dim"]}, action_dim {d["action_dim"]}')
    else:
        from dp_common.ee_space import EE_COLUMNS, EndEffectorSpace
        try:
            ee = EndEffectorSpace.from_dict(dict(space))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f'{where}: invalid action_space: {exc}') from exc
        if sorted(ee.joint_names) != sorted(joint_names):
            raise CheckpointError(f'{where}: the end-effector space is computed from joints '
                                  f'{ee.joint_names}, the checkpoint names {joint_names}')
        if list(space.get('columns', EE_COLUMNS)) != list(EE_COLUMNS) or \
                d['state_dim'] != ee.dim or d['action_dim'] != ee.dim:
            raise CheckpointError(f'{where}: end-effector space of {ee.dim} columns {list(EE_COLUMNS)} '
                                  f'but columns {space.get("columns")}, state_dim '
                                  f'{d["state_dim"]}, action_dim {d["action_dim"]}')
    for key in ('n_obs_steps', 'horizon', 'n_action_steps'):
        if d[key] != getattr(model_cfg, key):
            raise CheckpointError(f'{where}: {key}={d[key]} disagrees with model_config {getattr(model_cfg, key)}')
    image_hw = d['image_hw']
    if camera_names:
        if image_hw is None or len(image_hw) != 2 or min(int(v) for v in image_hw) < 8:
            raise CheckpointError(f'{where}: cameras {camera_names} need image_hw (H, W), got {image_hw!r}')
        image_hw = (int(image_hw[0]), int(image_hw[1]))
    else:
        image_hw = None
    dt_s = float(d['dt_s'])
    if not dt_s > 0:
        raise CheckpointError(f'{where}: dt_s must be > 0, got {dt_s}')
    if not isinstance(d['state_dict'], dict):
        raise CheckpointError(f'{where}: state_dict is not a dict')
    extra = {k: v for k, v in d.items() if k not in REQUIRED_KEYS and k != 'raw_state_dict'}
    return Checkpoint(model_cfg=model_cfg, vision_cfg=vision_cfg, sched_cfg=sched_cfg, train_cfg=train_cfg,
                      state_normalizer=state_norm, action_normalizer=action_norm, joint_names=joint_names,
                      camera_names=camera_names, image_hw=image_hw, dt_s=dt_s, state_dict=d['state_dict'],
                      raw_state_dict=d.get('raw_state_dict'), fingerprint=str(d['fingerprint']),
                      train_steps=int(d['train_steps']), extra=extra, path=where)


def load_checkpoint(path: str | os.PathLike, verify_weights: bool = True) -> Checkpoint:
    """Load and validate; ``verify_weights`` also checks every weight's name and shape."""
    where = str(path)
    if not os.path.isfile(where):
        raise CheckpointError(f'{where}: checkpoint file not found')
    try:
        d = torch.load(where, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f'{where}: cannot read checkpoint (corrupt or truncated file?): '
                              f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}') from exc
    except Exception as exc:  # weights_only unpickler refusing a pickled object, and the like
        raise CheckpointError(f'{where}: not a plain-dict checkpoint ({type(exc).__name__}: '
                              f'{str(exc).splitlines()[0] if str(exc) else ""})') from exc
    ckpt = from_dict_checked(d, where)
    if verify_weights:
        _load_weights(ckpt.new_model(), ckpt.state_dict, where)
        if ckpt.raw_state_dict is not None:
            _load_weights(ckpt.new_model(), ckpt.raw_state_dict, where + ' (raw weights)')
    return ckpt


def make_checkpoint(model: DiffusionModel | RegressionModel, joint_names: list[str], camera_names: list[str],
                    image_hw: tuple[int, int] | None, dt_s: float, model_cfg: ModelConfig,
                    vision_cfg: VisionConfig, sched_cfg: SchedulerConfig, train_cfg: TrainConfig,
                    state_normalizer: MinMaxNormalizer, action_normalizer: MinMaxNormalizer,
                    fingerprint: str = '', train_steps: int = 0,
                    raw_model: torch.nn.Module | None = None) -> Checkpoint:
    return Checkpoint(model_cfg=model_cfg, vision_cfg=vision_cfg, sched_cfg=sched_cfg, train_cfg=train_cfg,
                      state_normalizer=state_normalizer, action_normalizer=action_normalizer,
                      joint_names=list(joint_names), camera_names=list(camera_names),
                      image_hw=tuple(image_hw) if image_hw is not None else None, dt_s=float(dt_s),
                      state_dict=model.state_dict(),
                      raw_state_dict=raw_model.state_dict() if raw_model is not None else None,
                      fingerprint=fingerprint, train_steps=train_steps)


def create_untrained_checkpoint(path: str | os.PathLike, joint_names: list[str] | tuple[str, ...],
                                camera_names: list[str] | tuple[str, ...] = (),
                                image_hw: tuple[int, int] | None = None, preset: str = 'cpu_default',
                                seed: int = 0, dt_s: float = 0.1, *, action_min: float = -3.14159, action_max: float = 3.14159,
                                model_cfg: ModelConfig | None = None, vision_cfg: VisionConfig | None = None,
                                sched_cfg: SchedulerConfig | None = None, fingerprint: str = 'untrained',
                                action_space: dict | None = None, robot_mask: dict | None = None) -> str:
    """A real checkpoint with random weights (seeded), for tests and for wiring up a robot.

    State and action normalisers span [action_min, action_max] (rad) for every joint (numbers,
    or one per column). ``preset`` is 'cpu_default', 'paper' or 'tiny' (smallest, fastest; for
    tests). ``action_space``: an end-effector space (EndEffectorSpace.to_dict()): its columns
    (tip pose vectors) instead of the joints. ``robot_mask``: {camera: mask_spec} as if trained
    on images with the robot painted out.
    """
    cfgs = get_preset(preset)
    model_cfg = model_cfg or cfgs.model
    vision_cfg = vision_cfg or cfgs.vision
    sched_cfg = sched_cfg or cfgs.scheduler
    joint_names = list(joint_names)
    camera_names = list(camera_names)
    if camera_names and image_hw is None:
        raise ValueError('create_untrained_checkpoint: cameras need image_hw=(H, W)')
    if not camera_names:
        image_hw = None
    n = len(joint_names) if action_space is None else len(action_space['columns'])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(n, n, camera_names, image_hw, model_cfg, vision_cfg)
    lo = list(np.broadcast_to(np.asarray(action_min, dtype=np.float64), (n,)))
    hi = list(np.broadcast_to(np.asarray(action_max, dtype=np.float64), (n,)))
    ckpt = make_checkpoint(model, joint_names, camera_names, image_hw, dt_s, model_cfg, vision_cfg, sched_cfg,
                           cfgs.train, MinMaxNormalizer(lo, hi), MinMaxNormalizer(lo, hi),
                           fingerprint=fingerprint, train_steps=0)
    if action_space is not None:
        ckpt.extra['action_space'] = dict(action_space)
    if robot_mask:
        ckpt.extra['robot_mask'] = dict(robot_mask)
    return ckpt.save(path)

