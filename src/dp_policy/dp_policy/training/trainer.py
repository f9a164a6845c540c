"""Training: episodes in, a deployable checkpoint out (ROS-free).

    ckpt_path = train(episodes, meta, model_cfg, vision_cfg, sched_cfg, train_cfg, out_dir)

* ``EpisodeWindows`` - every episode in memory (normalised state/action, uint8 images), and for
  every time step of every episode one training window: ``n_obs_steps`` observations ending "now"
  and ``horizon`` actions starting at the first of them; indices past an episode's ends repeat its
  first/last step (the paper's padding). Batches are gathered by index, with no per-sample Python.
* ``train`` - AdamW (fused where torch has it), linear warmup then cosine decay, EMA of the weights
  (the checkpoint carries the EMA weights), bf16 autocast where the hardware computes it natively
  (TrainConfig.precision), seeded, resumable, optional wall-clock budget, held-out evaluation that
  keeps the best checkpoint (holdout.py), progress bar, a training report, DistributedDataParallel
  when launched by ``torchrun`` (WORLD_SIZE set).

Files in ``out_dir``:
    policy.ckpt   deployable checkpoint (checkpoint.py format; EMA weights), rewritten atomically:
                  the last one, or with held-out evaluation the best scored one
    resume.pt     raw + EMA weights, optimiser, LR schedule, RNG state, step, elapsed time, the best
                  held-out score so far
    loss.csv      step, loss, lr, elapsed_s, samples_per_s (one row every log_every steps)
    eval.csv      step, held-out rmse, rmse_executed, mode_js_bits, score, elapsed_s (held-out only)
    loss.png      the loss curve (when matplotlib is installed)
    report.png, report.html   loss, learning rate, held-out error and coverage, samples/s over
                  the run, and the run's summary (when matplotlib is installed)
    tensorboard/  the same scalars for TensorBoard (when the `tensorboard` package is installed)

Determinism: the data order is a function of (seed, rank, epoch) and the torch RNG state is saved,
so a resumed run continues the same sample sequence. Not here: reading bags (data/dataset.py), the CLI
(training/cli.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import copy
import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dp_policy.checkpoint import atomic_torch_save, make_checkpoint
from dp_policy.config import ModelConfig, SchedulerConfig, TrainConfig, VisionConfig, to_dict
from dp_policy.data.episode import Episode, EpisodeSetMeta
from dp_policy.training.holdout import HeldOut, split_holdout
from dp_policy.training.report import EvalLog, Scalars, read_csv, write_report
from dp_policy.model.models import build_model
from dp_policy.data.normalizer import MinMaxNormalizer
from dp_policy.data.spaces import fit_normalizer
from dp_policy.sampling.schedulers import NoiseScheduler

RESUME_VERSION = 2
CKPT_NAME = 'policy.ckpt'
RESUME_NAME = 'resume.pt'
# TrainConfig fields that may change when a run is resumed (everything else must match)
RESUMABLE_CHANGES = ('steps', 'checkpoint_every', 'log_every', 'max_minutes', 'eval_every')


class TrainError(ValueError):
    """Training cannot start or resume with these inputs; the message says why."""


# ------------------------------------------------------------------------------------------------
# Data


class EpisodeWindows:
    """All episodes as flat tensors plus one (obs indices, action indices) window per sample."""

    def __init__(self, episodes: Sequence[Episode], n_obs_steps: int, horizon: int, n_action_steps: int,
                 state_normalizer: MinMaxNormalizer, action_normalizer: MinMaxNormalizer,
                 camera_names: Sequence[str], device: torch.device | str = 'cpu'):
        if not episodes:
            raise TrainError('no episodes to train on')
        self.camera_names = list(camera_names)
        obs_idx, act_idx = [], []
        offset = 0
        for ep in episodes:
            L = len(ep)
            missing = [c for c in self.camera_names if c not in ep.images]
            if missing:
                raise TrainError(f'episode {ep.name}: no images for camera(s) {missing}')
            # "now" = i; executed actions i .. i+n_action_steps-1 must exist (padding only beyond them)
            now = np.arange(max(1, L - n_action_steps + 1))                       # (W,)
            o = now[:, None] - (n_obs_steps - 1) + np.arange(n_obs_steps)[None]   # (W, To)
            a = now[:, None] - (n_obs_steps - 1) + np.arange(horizon)[None]       # (W, T)
            obs_idx.append(np.clip(o, 0, L - 1) + offset)
            act_idx.append(np.clip(a, 0, L - 1) + offset)
            offset += L
        self.device = torch.device(device)
        state = state_normalizer.normalize(np.concatenate([e.state for e in episodes]).astype(np.float32))
        action = action_normalizer.normalize(np.concatenate([e.action for e in episodes]).astype(np.float32))
        self.state = torch.from_numpy(np.ascontiguousarray(state, dtype=np.float32)).to(self.device)   # (N, S)
        self.action = torch.from_numpy(np.ascontiguousarray(action, dtype=np.float32)).to(self.device)  # (N, A)
        self.images = {c: torch.from_numpy(np.ascontiguousarray(np.concatenate([e.images[c] for e in episodes])))
                       .to(self.device) for c in self.camera_names}                                   # (N, H, W, 3)
        self.obs_idx = torch.from_numpy(np.concatenate(obs_idx)).to(self.device)                      # (W, To)
        self.act_idx = torch.from_numpy(np.concatenate(act_idx)).to(self.device)                      # (W, T)

    def __len__(self) -> int:
        return int(self.obs_idx.shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Window indices (B,) -> state (B, To, S), images {cam: (B, To, H, W, 3) uint8}, action (B, T, A)."""
        idx = idx.to(self.device)
        o = self.obs_idx[idx]                                                      # (B, To)
        return (self.state[o], {c: im[o] for c, im in self.images.items()},
                self.action[self.act_idx[idx]])


class BatchOrder:
    """Window indices per step: a fresh permutation every epoch, a function of (seed, rank, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0):
        self.n, self.b, self.seed, self.rank = n, batch_size, seed, rank
        self.per_epoch = max(1, n // batch_size)
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, self.rank, epoch])
            # fewer windows than a batch: draw with replacement
            self._perm = rng.permutation(self.n) if self.n >= self.b else rng.integers(0, self.n, self.b)
            self._epoch = epoch
        return torch.from_numpy(self._perm[pos * self.b:(pos + 1) * self.b].astype(np.int64))


# ------------------------------------------------------------------------------------------------
# Optimisation pieces


def native_bf16(dev: torch.device) -> bool:
    """Whether the device computes bfloat16 natively (x86: AVX512-BF16 or AMX; CUDA: compute
    capability 8.0 and newer). Emulated bf16 is slower than float32: not used by 'auto'."""
    if dev.type == 'cuda':
        return bool(torch.cuda.is_bf16_supported())
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line for line in f if line.startswith('flags')), '').split()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def resolve_precision(precision: str, dev: torch.device) -> str:
    """TrainConfig.precision -> 'fp32' or 'bf16' for this device."""
    if precision == 'auto':
        return 'bf16' if native_bf16(dev) else 'fp32'
    return precision


def autocast(precision: str, dev: torch.device):
    """The context a training step's forward pass runs in: bf16 autocast or nothing."""
    if precision == 'bf16':
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on norms and biases; the fused kernel where torch has one for
    the device (CPU since torch 2.4: 16 -> 5 ms per step for the cpu_default network here)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{'params': decay, 'weight_decay': cfg.weight_decay},
              {'params': no_decay, 'weight_decay': 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), foreach=True)


def lr_factor(progress: float, step: int, warmup_steps: int) -> float:
    """Linear warmup over warmup_steps, then cosine from 1 to 0 as progress goes 0 -> 1."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


class EMA:
    """Exponential moving average of a model's weights; decay warms up as (1+step)/(10+step)."""

    def __init__(self, model: nn.Module, max_decay: float, min_decay: float = 0.0):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.max_decay, self.min_decay = max_decay, min_decay

    def decay(self, step: int) -> float:
        return max(self.min_decay, min(self.max_decay, (1.0 + step) / (10.0 + step)))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if getattr(self, '_src', None) is not model:      # walking the module tree costs ~ms: once
            self._src = model
            self._pairs = ([p for p in self.model.parameters()], [p.detach() for p in model.parameters()])
            self._bufs = list(zip(self.model.buffers(), model.buffers()))
        torch._foreach_lerp_(self._pairs[0], self._pairs[1], 1.0 - self.decay(step))
        for eb, b in self._bufs:
            eb.copy_(b)


class Objective(nn.Module):
    """model + noise schedule -> scalar loss; the module DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module, noise_scheduler: NoiseScheduler):
        super().__init__()
        self.model = model
        self.noise_scheduler = noise_scheduler

    def forward(self, state: torch.Tensor, images: dict[str, torch.Tensor], action: torch.Tensor) -> torch.Tensor:
        return self.model.loss(state, images, action, self.noise_scheduler)


# ------------------------------------------------------------------------------------------------
# Distributed


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Under torchrun (WORLD_SIZE > 1): init the process group; each rank uses cuda:LOCAL_RANK
    (nccl) or the CPU (gloo). Otherwise a single process on `device`."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    dev = resolve_device(device)
    if world <= 1:
        return Dist(), dev
    import torch.distributed as dist

    rank, local = int(os.environ['RANK']), int(os.environ.get('LOCAL_RANK', '0'))
    if dev.type == 'cuda':
        dev = torch.device('cuda', local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group('nccl' if dev.type == 'cuda' else 'gloo')
    return Dist(rank, world, local), dev


def resolve_device(device: str | torch.device) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' -> torch.device; asking for CUDA without one is a TrainError."""
    text = str(device)
    if text == 'cpu':
        return torch.device('cpu')
    if not text.startswith('cuda'):
        raise TrainError(f'device must be cpu, cuda or cuda:N, got {text!r}')
    try:
        dev = torch.device(text)
    except RuntimeError as err:
        raise TrainError(f'device {text!r}: {err}') from None
    if not torch.cuda.is_available():
        raise TrainError(f'device {text}: CUDA is not available on this machine '
                         f'(torch {torch.__version__}, built with CUDA {torch.version.cuda})')
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise TrainError(f'device {text}: only {torch.cuda.device_count()} CUDA device(s)')
    return dev


# ------------------------------------------------------------------------------------------------
# Files


class LossLog:
    """loss.csv (appended; rows past a resumed step are dropped) and loss.png."""

    FIELDS = ('step', 'loss', 'lr', 'elapsed_s', 'samples_per_s')

    def __init__(self, out: Path, start_step: int):
        self.csv = out / 'loss.csv'
        self.png = out / 'loss.png'
        rows = []
        if start_step > 0 and self.csv.is_file():
            rows = [r for r in read_csv(self.csv) if int(r['step']) <= start_step]
        with open(self.csv, 'w', newline='') as f:
            w = csv.writer(f)
            w.writerow(self.FIELDS)
            for r in rows:
                w.writerow([r[k] for k in self.FIELDS])
        self.steps = [int(r['step']) for r in rows]
        self.losses = [float(r['loss']) for r in rows]

    def add(self, step: int, loss: float, lr: float, elapsed_s: float, samples_per_s: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        with open(self.csv, 'a', newline='') as f:
            csv.writer(f).writerow([step, f'{loss:.6g}', f'{lr:.6g}', f'{elapsed_s:.2f}', f'{samples_per_s:.1f}'])

    def plot(self, title: str) -> bool:
        """Write loss.png; False when matplotlib is missing."""
        try:
            import matplotlib
            matplotlib.use('Agg')
            import matplotlib.pyplot as plt
        except ImportError:
            return False
        if not self.steps:
            return False
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(self.steps, self.losses, lw=1)
        ax.set_yscale('log')
        ax.set_xlabel('step')
        ax.set_ylabel('training loss (mean over log interval)')
        ax.set_title(title)
        ax.grid(True, which='both', alpha=0.3)
        fig.tight_layout()
        tmp = self.png.with_suffix('.tmp.png')
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, self.png)
        return True


# ------------------------------------------------------------------------------------------------
# The loop


def _run_signature(meta: EpisodeSetMeta, model_cfg, vision_cfg, sched_cfg, train_cfg) -> dict:
    tc = {k: v for k, v in to_dict(train_cfg).items() if k not in RESUMABLE_CHANGES}
    sig = {'model': to_dict(model_cfg), 'vision': to_dict(vision_cfg), 'scheduler': to_dict(sched_cfg),
           'train': tc, 'fingerprint': meta.fingerprint, 'joint_names': list(meta.joint_names),
           'camera_names': list(meta.camera_names),
           'image_hw': list(meta.image_hw) if meta.image_hw else None, 'dt_s': float(meta.dt_s)}
    if meta.action_space is not None:     # (joint space: no key, as in earlier resume files)
        sig['action_space'] = _space_signature(meta.action_space)
    if meta.robot_mask:                   # (images as recorded: no key, likewise)
        sig['robot_mask'] = meta.robot_mask
    return sig


def _space_signature(space: dict) -> dict:
    """What a resumed run must share of the action space: its kind, tip, joints and URDF."""
    return {'kind': space['kind'], 'tip_link': space['tip_link'],
            'joint_names': list(space['joint_names']),
            'urdf_sha256': hashlib.sha256(space['urdf'].encode()).hexdigest()[:16]}


def _diff(a: dict, b: dict, prefix: str = '') -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f'{prefix}{k}.')
        elif va != vb:
            out.append(f'{prefix}{k}: {va!r} -> {vb!r}')
    return out


def train(episodes: Sequence[Episode], meta: EpisodeSetMeta, model_cfg: ModelConfig, vision_cfg: VisionConfig,
          sched_cfg: SchedulerConfig, train_cfg: TrainConfig, out_dir: str | os.PathLike, *,
          device: str = 'cpu', resume: bool = True, progress: bool = True, num_workers: int = 0,
          extra: dict | None = None, callback: Callable[[int, float], None] | None = None,
          teacher=None, distill_segments: int = 10) -> str:
    """Train and return the path of the deployable checkpoint (``out_dir/policy.ckpt``).

    ``teacher`` (a loaded Checkpoint): consistency distillation (distill.py) of the teacher into
    a student of its architecture, starting from its weights, with its normalisers; the configs
    passed must be the teacher's, ``sched_cfg`` the student's (distill.student_scheduler).

    ``num_workers`` > 0 gathers the next batch in a background thread while the model trains.
    ``callback(step, loss)`` is called after every optimiser step (tests, notebooks).
    Stops after ``train_cfg.steps`` steps or ``train_cfg.max_minutes`` of training, whichever comes
    first; the learning rate follows the cosine over whichever is closer to its end.
    """
    _check_episodes(episodes, meta)
    run = _TrainingRun(episodes, meta, model_cfg, vision_cfg, sched_cfg, train_cfg, out_dir,
                       device=device, progress=progress, extra=extra, teacher=teacher,
                       distill_segments=distill_segments)
    resume_file = run.out / RESUME_NAME
    if resume and resume_file.is_file():
        run.resume(resume_file)
    run.prepare_data()
    return run.run(num_workers, callback)


def _check_teacher(teacher, meta: EpisodeSetMeta, model_cfg, vision_cfg, sched_cfg) -> None:
    """Distillation: the data, the network and the noise schedule are the teacher's."""
    if teacher.model_cfg.kind != 'diffusion':
        raise TrainError(f'{teacher.path or "teacher"}: a {teacher.model_cfg.kind} checkpoint has '
                         'no denoiser to distil')
    mismatch = [f'{name} {mine!r} (teacher {theirs!r})' for name, mine, theirs in (
        ('joints', list(meta.joint_names), list(teacher.joint_names)),
        ('action space', meta.action_space, teacher.action_space),
        ('cameras', list(meta.camera_names), list(teacher.camera_names)),
        ('image size', tuple(meta.image_hw) if meta.image_hw else None,
         tuple(teacher.image_hw) if teacher.image_hw else None),
        ('dt_s', round(float(meta.dt_s), 9), round(float(teacher.dt_s), 9)),
        ('model', to_dict(model_cfg), to_dict(teacher.model_cfg)),
        ('vision', to_dict(vision_cfg), to_dict(teacher.vision_cfg)),
        ('noise schedule', to_dict(dataclasses.replace(sched_cfg, kind='ddim',
                                                       num_inference_steps=1)),
         to_dict(dataclasses.replace(teacher.sched_cfg, kind='ddim', num_inference_steps=1))))
        if mine != theirs]
    if mismatch:
        raise TrainError(f'{teacher.path or "teacher"}: the data or configs differ from the '
                         f'teacher\'s: {"; ".join(mismatch)}')


def _check_episodes(episodes: Sequence[Episode], meta: EpisodeSetMeta) -> None:
    if not episodes:
        raise TrainError('no episodes to train on')
    if meta.camera_names and meta.image_hw is None:
        raise TrainError(f'cameras {meta.camera_names} but no image size in the episode set')
    n = meta.dim
    for ep in episodes:
        if ep.state.shape[1] != n or ep.action.shape[1] != n:
            raise TrainError(f'episode {ep.name}: state {ep.state.shape} / action {ep.action.shape} do not '
                             f'have {n} columns ({meta.space_kind} space, joints {meta.joint_names})')


def _read_resume_state(resume_file: Path, signature: dict) -> dict:
    """resume.pt, checked: readable, this code's version, made with the same settings and data."""
    try:
        state = torch.load(resume_file, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file: say which and why
        first = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise TrainError(f'{resume_file}: cannot read the resume state ({type(err).__name__}: {first}); '
                         f'delete it or pass --no-resume') from err
    if state.get('version') != RESUME_VERSION:
        raise TrainError(f'{resume_file}: resume state version {state.get("version")!r}, this code '
                         f'writes {RESUME_VERSION}; delete it or pass --no-resume')
    changed = _diff(state['signature'], signature)
    if changed:
        raise TrainError(f'{resume_file}: made with other settings or data ({"; ".join(changed[:6])}); '
                         f'use another output folder or --no-resume')
    return state


class _TrainingRun:
    """One training run: the model, optimiser, EMA and normalisers, the data, the logs, and the
    loop that ties them (train() is its entry point)."""

    def __init__(self, episodes, meta: EpisodeSetMeta, model_cfg: ModelConfig, vision_cfg: VisionConfig,
                 sched_cfg: SchedulerConfig, train_cfg: TrainConfig, out_dir, *, device: str,
                 progress: bool, extra: dict | None, teacher=None, distill_segments: int = 10):
        self.dist, self.dev = setup_distributed(device)
        self.out = Path(out_dir)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.meta, self.model_cfg, self.vision_cfg = meta, model_cfg, vision_cfg
        self.sched_cfg, self.cfg, self.progress, self.extra = sched_cfg, train_cfg, progress, extra
        self.episodes, self.held_out = split_holdout(episodes, train_cfg.holdout_episodes, train_cfg.seed)
        self.precision = resolve_precision(train_cfg.precision, self.dev)
        torch.manual_seed(train_cfg.seed)
        space = meta.action_space
        self.state_norm = fit_normalizer(np.concatenate([e.state for e in self.episodes]), space)
        self.action_norm = fit_normalizer(np.concatenate([e.action for e in self.episodes]), space)
        n = meta.dim
        self.model = build_model(n, n, list(meta.camera_names), meta.image_hw, model_cfg,
                                 vision_cfg).to(self.dev)
        self.teacher, self.distill_segments = teacher, distill_segments
        if teacher is not None:      # distillation: the student starts as the teacher
            _check_teacher(teacher, meta, model_cfg, vision_cfg, sched_cfg)
            self.state_norm, self.action_norm = teacher.state_normalizer, teacher.action_normalizer
            self.model.load_state_dict(teacher.state_dict)
        self.noise_sched = NoiseScheduler(sched_cfg).to(self.dev)
        self.ema = EMA(self.model, train_cfg.ema_decay, train_cfg.ema_min_decay)
        self.opt = make_optimizer(self.model, train_cfg)
        self.best = {'score': math.inf, 'step': None}   # held-out: the step of the checkpoint kept
        self.signature = _run_signature(meta, model_cfg, vision_cfg, sched_cfg, train_cfg)
        if teacher is not None:
            self.signature['teacher'] = {'fingerprint': teacher.fingerprint,
                                         'train_steps': int(teacher.train_steps),
                                         'segments': int(distill_segments)}
        self.step, self.elapsed_before = 0, 0.0
        self.t_run = time.monotonic()
        self.last_plot = time.monotonic()   # the PNG is redrawn at most every 2 min (and at the end)

    def resume(self, resume_file: Path) -> None:
        state = _read_resume_state(resume_file, self.signature)
        self.model.load_state_dict(state['model'])
        self.ema.model.load_state_dict(state['ema'])
        self.opt.load_state_dict(state['optimizer'])
        self.state_norm = MinMaxNormalizer.from_state_dict(state['normalizer']['state'])
        self.action_norm = MinMaxNormalizer.from_state_dict(state['normalizer']['action'])
        torch.set_rng_state(state['torch_rng'])
        if self.dev.type == 'cuda' and state.get('cuda_rng') is not None:
            torch.cuda.set_rng_state(state['cuda_rng'], self.dev)
        self.step, self.elapsed_before = int(state['step']), float(state['elapsed_s'])
        self.best.update(state.get('best') or {})
        if self.progress and self.dist.main:
            print(f'[train] resuming {resume_file} at step {self.step} ({self.elapsed_before:.0f}s '
                  'trained)', file=sys.stderr)

    def prepare_data(self) -> None:
        """Training windows, batch order, the (distributed) objective, the logs, held-out data."""
        mc, names = self.model_cfg, self.meta.camera_names
        args = (self.episodes, mc.n_obs_steps, mc.horizon, mc.n_action_steps, self.state_norm,
                self.action_norm, names)
        try:
            self.data = EpisodeWindows(*args, self.dev)
        except torch.cuda.OutOfMemoryError:  # pragma: no cover - larger than the GPU: gather on the CPU
            self.data = EpisodeWindows(*args, 'cpu')
        self.order = BatchOrder(len(self.data), self.cfg.batch_size, self.cfg.seed, self.dist.rank)
        if self.teacher is None:
            self.objective = Objective(self.model, self.noise_sched)
        else:
            from dp_policy.training.distill import ConsistencyObjective

            self.objective = ConsistencyObjective(
                self.model, self.teacher.build_model(ema=True).to(self.dev),
                self.sched_cfg, self.distill_segments).to(self.dev)
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.objective = DDP(self.objective,
                                 device_ids=[self.dev.index] if self.dev.type == 'cuda' else None)
        main = self.dist.main
        self.log = LossLog(self.out, self.step) if main else None
        self.held = None
        if self.held_out and main:
            self.held = HeldOut(self.held_out, mc.n_obs_steps, mc.horizon, mc.n_action_steps, names,
                                seed=self.cfg.seed)
        self.eval_log = EvalLog(self.out, self.step) if self.held is not None else None
        self.scalars = Scalars(self.out) if main else None

    # ------------------------------------------------------------------ time and schedule
    def elapsed(self) -> float:
        """Seconds trained, this run and the ones it resumed."""
        return self.elapsed_before + time.monotonic() - self.t_run

    def out_of_budget(self) -> bool:
        budget_s = self.cfg.max_minutes * 60.0
        return self.step >= self.cfg.steps or (budget_s > 0 and self.elapsed() >= budget_s)

    def lr(self) -> float:
        cfg = self.cfg
        frac = (self.step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        if cfg.max_minutes > 0:
            frac = max(frac, self.elapsed() / (cfg.max_minutes * 60.0))
        return cfg.lr * lr_factor(frac, self.step, cfg.warmup_steps)

    # ------------------------------------------------------------------ checkpoints
    def current_ckpt(self):
        """The deployable checkpoint of the EMA weights now."""
        m = self.meta
        ckpt = make_checkpoint(self.ema.model, m.joint_names, m.camera_names, m.image_hw, m.dt_s,
                               self.model_cfg, self.vision_cfg, self.sched_cfg, self.cfg,
                               self.state_norm, self.action_norm, fingerprint=m.fingerprint,
                               train_steps=self.step)
        log = self.log
        ckpt.extra = dict(self.extra or {})
        if m.action_space is not None:
            ckpt.extra['action_space'] = dict(m.action_space)
        if m.robot_mask:
            ckpt.extra['robot_mask'] = dict(m.robot_mask)
        ckpt.extra['train_summary'] = {
            'elapsed_s': round(self.elapsed(), 2), 'windows': len(self.data),
            'episodes': len(self.episodes), 'held_out_episodes': len(self.held_out),
            'precision': self.precision,
            'final_loss': float(log.losses[-1]) if log and log.losses else None,
            'world_size': self.dist.world_size, 'device': str(self.dev)}
        return ckpt

    def evaluate(self) -> None:
        """Held-out evaluation of the EMA weights now; policy.ckpt becomes them if they score
        better than every earlier evaluation (NaN never does)."""
        ckpt = self.current_ckpt()
        m = self.held.evaluate(ckpt)
        self.eval_log.add(self.step, m, self.elapsed())
        self.scalars.add(self.step, {f'heldout/{k}': m[k] for k in ('rmse', 'rmse_executed',
                                                                       'mode_js_bits', 'score')})
        if m['score'] < self.best['score']:
            self.best.update(score=m['score'], step=self.step)
            ckpt.extra['held_out'] = dict(m, step=self.step)
            ckpt.save(self.out / CKPT_NAME)
        if self.progress:
            kept = 'kept' if self.best['step'] == self.step else f'best stays step {self.best["step"]}'
            unit = 'mrad' if self.meta.action_space is None else 'mm / 1e-3 rot6d'
            print(f'[train] step {self.step}: held-out rmse {m["rmse_executed"] * 1e3:.1f} {unit} '
                  f'(executed steps), mode JS {m["mode_js_bits"]:.3f} bit, score '
                  f'{m["score"]:.4f}: {kept} ({m["eval_s"]:.1f} s)', file=sys.stderr)

    def save(self, final: bool) -> str:
        """policy.ckpt (without held-out evaluation: the EMA weights now; with it: kept by
        evaluate(), the last weights only where none ever scored), resume.pt, and the plots."""
        path = str(self.out / CKPT_NAME)
        if not self.dist.main:
            return path
        if self.held is None or (final and self.best['step'] is None):
            path = self.current_ckpt().save(self.out / CKPT_NAME)
        atomic_torch_save({
            'version': RESUME_VERSION, 'signature': self.signature, 'step': self.step,
            'elapsed_s': self.elapsed(),
            'model': {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            'ema': {k: v.detach().cpu() for k, v in self.ema.model.state_dict().items()},
            'optimizer': self.opt.state_dict(),
            'normalizer': {'state': self.state_norm.state_dict(),
                           'action': self.action_norm.state_dict()},
            'torch_rng': torch.get_rng_state(),
            'cuda_rng': torch.cuda.get_rng_state(self.dev) if self.dev.type == 'cuda' else None,
            'best': {'score': self.best['score'], 'step': self.best['step']},
        }, self.out / RESUME_NAME)
        if self.log is not None and (final or time.monotonic() - self.last_plot > 120.0):
            self.last_plot = time.monotonic()
            self.write_figures(final)
        return path

    def write_figures(self, final: bool) -> None:
        mc, log = self.model_cfg, self.log
        plotted = log.plot(f'{mc.kind} {to_dict(mc)["down_dims"]}, '
                           f'{self.vision_cfg.encoder if self.meta.camera_names else "state"}: '
                           f'step {self.step}')
        if final and not plotted and self.progress:
            print('[train] matplotlib not installed: loss.png not written (loss.csv is)', file=sys.stderr)
        write_report(self.out, {
            'steps': self.step, 'elapsed_s': round(self.elapsed(), 1), 'precision': self.precision,
            'batch_size': self.cfg.batch_size,
            'episodes (training / held out)': f'{len(self.episodes)} / {len(self.held_out)}',
            'final loss': log.losses[-1] if log.losses else None, 'best_step': self.best['step'],
            'best held-out score': self.best['score'],
            'checkpoint': CKPT_NAME + (' (best held-out score)' if self.held else ' (last)')})

    # ------------------------------------------------------------------ the loop
    def fetch(self, step: int):
        st, im, ac = self.data.batch(self.order.indices(step))
        if st.device != self.dev:
            dev = self.dev
            st, ac = st.to(dev, non_blocking=True), ac.to(dev, non_blocking=True)
            im = {c: v.to(dev, non_blocking=True) for c, v in im.items()}
        return st, im, ac

    def optimise(self, batch, lr: float) -> float:
        """One optimiser step on a batch; returns its loss."""
        for g in self.opt.param_groups:
            g['lr'] = lr
        with autocast(self.precision, self.dev):
            loss = self.objective(*batch)
        if not torch.isfinite(loss):
            raise TrainError(f'loss became {loss.item()} at step {self.step} (lr {lr:.3g}); lower --lr')
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        self.opt.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        return float(loss.detach())

    def progress_bar(self):
        if not (self.progress and self.dist.main):
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover
            return None
        total = self.cfg.steps
        return tqdm(total=total if total < 10 ** 8 else None, initial=self.step, unit='step',
                    dynamic_ncols=True, file=sys.stderr,
                    mininterval=0.5 if sys.stderr.isatty() else 10.0)

    def run(self, num_workers: int, callback) -> str:
        self.t_run = time.monotonic()
        bar = self.progress_bar()
        prefetch = None
        if num_workers > 0:
            from concurrent.futures import ThreadPoolExecutor

            prefetch = ThreadPoolExecutor(max_workers=1)
        self.model.train()
        window = _LossWindow()
        pending = prefetch.submit(self.fetch, self.step) if prefetch else None
        try:
            while not self.out_of_budget():
                lr = self.lr()
                if prefetch:
                    batch = pending.result()
                    pending = prefetch.submit(self.fetch, self.step + 1)
                else:
                    batch = self.fetch(self.step)
                lv = self.optimise(batch, lr)
                window.add(lv, batch[0].shape[0], lr)
                if callback is not None:
                    callback(self.step, lv)
                if bar is not None:
                    bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    self.log_window(window, bar)
                if self.held is not None and self.step % self.cfg.eval_every == 0:
                    self.evaluate()
                if self.step % self.cfg.checkpoint_every == 0:
                    self.save(final=False)
        except KeyboardInterrupt:
            self.save(final=True)
            raise
        finally:
            if bar is not None:
                bar.close()
            if prefetch is not None:
                prefetch.shutdown(wait=True, cancel_futures=True)
        return self.finish(window)

    def log_window(self, window: '_LossWindow', bar=None) -> None:
        """The mean loss and samples/s since the last log line: loss.csv, TensorBoard, the bar."""
        now = time.monotonic()
        sps = window.samples * self.dist.world_size / max(1e-9, now - window.t0)
        loss = window.mean()
        if self.log is not None:
            self.log.add(self.step, loss, window.lr, self.elapsed(), sps)
            self.scalars.add(self.step, {'train/loss': loss, 'train/lr': window.lr,
                                         'train/samples_per_s': sps})
        if bar is not None:
            bar.set_postfix(loss=f'{loss:.4f}', lr=f'{window.lr:.2e}', samples_s=f'{sps:.0f}',
                            refresh=False)
        window.reset(now)

    def finish(self, window: '_LossWindow') -> str:
        if window.n and self.log is not None:
            self.log_window(window)
        if self.held is not None and self.step > 0 and self.step % self.cfg.eval_every != 0:
            self.evaluate()                                 # the final weights get their turn
        path = self.save(final=True)
        if self.scalars is not None:
            self.scalars.close()
        if self.dist.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return path


class _LossWindow:
    """Losses and samples since the last log line."""

    def __init__(self):
        self.lr = 0.0
        self.reset(time.monotonic())

    def reset(self, now: float) -> None:
        self.loss_sum, self.n, self.samples, self.t0 = 0.0, 0, 0, now

    def add(self, loss: float, samples: int, lr: float) -> None:
        self.loss_sum, self.n, self.samples, self.lr = (self.loss_sum + loss, self.n + 1,
                                                        self.samples + samples, lr)

    def mean(self) -> float:
        return self.loss_sum / max(1, self.n)
