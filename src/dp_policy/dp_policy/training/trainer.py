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
so a resumed run continues the same sample sequence. Not here: reading bags (dataset.py), the CLI
(train_cli.py).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

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
    return {'model': to_dict(model_cfg), 'vision': to_dict(vision_cfg), 'scheduler': to_dict(sched_cfg),
            'train': tc, 'fingerprint': meta.fingerprint, 'joint_names': list(meta.joint_names),
            'camera_names': list(meta.camera_names),
            'image_hw': list(meta.image_hw) if meta.image_hw else None, 'dt_s': float(meta.dt_s)}


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
          extra: dict | None = None, callback: Callable[[int, float], None] | None = None) -> str:
    """Train and return the path of the deployable checkpoint (``out_dir/policy.ckpt``).

    ``num_workers`` > 0 gathers the next batch in a background thread while the model trains.
    ``callback(step, loss)`` is called after every optimiser step (tests, notebooks).
    Stops after ``train_cfg.steps`` steps or ``train_cfg.max_minutes`` of training, whichever comes
    first; the learning rate follows the cosine over whichever is closer to its end.
    """
    dist_info, dev = setup_distributed(device)
    out = Path(out_dir)
    if dist_info.main:
        out.mkdir(parents=True, exist_ok=True)
    if not episodes:
        raise TrainError('no episodes to train on')
    if meta.camera_names and meta.image_hw is None:
        raise TrainError(f'cameras {meta.camera_names} but no image size in the episode set')
    S = len(meta.joint_names)
    for ep in episodes:
        if ep.state.shape[1] != S or ep.action.shape[1] != S:
            raise TrainError(f'episode {ep.name}: state {ep.state.shape} / action {ep.action.shape} do not '
                             f'have {S} columns (joints {meta.joint_names})')

    episodes, held_out = split_holdout(episodes, train_cfg.holdout_episodes, train_cfg.seed)
    precision = resolve_precision(train_cfg.precision, dev)
    torch.manual_seed(train_cfg.seed)
    state_norm = MinMaxNormalizer.fit(np.concatenate([e.state for e in episodes]))
    action_norm = MinMaxNormalizer.fit(np.concatenate([e.action for e in episodes]))
    model = build_model(S, S, list(meta.camera_names), meta.image_hw, model_cfg, vision_cfg).to(dev)
    noise_sched = NoiseScheduler(sched_cfg).to(dev)
    ema = EMA(model, train_cfg.ema_decay, train_cfg.ema_min_decay)
    opt = make_optimizer(model, train_cfg)
    best = {'score': math.inf, 'step': None}     # held-out: the step of the checkpoint kept

    signature = _run_signature(meta, model_cfg, vision_cfg, sched_cfg, train_cfg)
    step, elapsed_before = 0, 0.0
    resume_file = out / RESUME_NAME
    if resume and resume_file.is_file():
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
        model.load_state_dict(state['model'])
        ema.model.load_state_dict(state['ema'])
        opt.load_state_dict(state['optimizer'])
        state_norm = MinMaxNormalizer.from_state_dict(state['normalizer']['state'])
        action_norm = MinMaxNormalizer.from_state_dict(state['normalizer']['action'])
        torch.set_rng_state(state['torch_rng'])
        if dev.type == 'cuda' and state.get('cuda_rng') is not None:
            torch.cuda.set_rng_state(state['cuda_rng'], dev)
        step, elapsed_before = int(state['step']), float(state['elapsed_s'])
        best.update(state.get('best') or {})
        if progress and dist_info.main:
            print(f'[train] resuming {resume_file} at step {step} ({elapsed_before:.0f}s trained)',
                  file=sys.stderr)

    data_dev = dev
    try:
        data = EpisodeWindows(episodes, model_cfg.n_obs_steps, model_cfg.horizon, model_cfg.n_action_steps,
                              state_norm, action_norm, meta.camera_names, data_dev)
    except torch.cuda.OutOfMemoryError:  # pragma: no cover - dataset larger than the GPU: gather on the CPU
        data = EpisodeWindows(episodes, model_cfg.n_obs_steps, model_cfg.horizon, model_cfg.n_action_steps,
                              state_norm, action_norm, meta.camera_names, 'cpu')
    order = BatchOrder(len(data), train_cfg.batch_size, train_cfg.seed, dist_info.rank)
    objective = Objective(model, noise_sched)
    if dist_info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        objective = DDP(objective, device_ids=[dev.index] if dev.type == 'cuda' else None)

    log = LossLog(out, step) if dist_info.main else None
    held = None
    if held_out and dist_info.main:
        held = HeldOut(held_out, model_cfg.n_obs_steps, model_cfg.horizon, model_cfg.n_action_steps,
                       meta.camera_names, seed=train_cfg.seed)
    eval_log = EvalLog(out, step) if held is not None else None
    scalars = Scalars(out) if dist_info.main else None
    budget_s = train_cfg.max_minutes * 60.0
    total = train_cfg.steps

    def progress_frac(s: int, elapsed: float) -> float:
        frac = (s - train_cfg.warmup_steps) / max(1, total - train_cfg.warmup_steps)
        if budget_s > 0:
            frac = max(frac, elapsed / budget_s)
        return frac

    last_plot = [time.monotonic()]       # the PNG is redrawn at most every 2 min (and at the end)

    def current_ckpt():
        """The deployable checkpoint of the EMA weights now."""
        ckpt = make_checkpoint(ema.model, meta.joint_names, meta.camera_names, meta.image_hw, meta.dt_s,
                               model_cfg, vision_cfg, sched_cfg, train_cfg, state_norm, action_norm,
                               fingerprint=meta.fingerprint, train_steps=step)
        ckpt.extra = dict(extra or {})
        ckpt.extra['train_summary'] = {'elapsed_s': round(elapsed_before + run_time(), 2),
                                       'windows': len(data), 'episodes': len(episodes),
                                       'held_out_episodes': len(held_out), 'precision': precision,
                                       'final_loss': float(log.losses[-1]) if log and log.losses else None,
                                       'world_size': dist_info.world_size, 'device': str(dev)}
        return ckpt

    def evaluate() -> None:
        """Held-out evaluation of the EMA weights now; policy.ckpt becomes them if they score
        better than every earlier evaluation (NaN never does)."""
        ckpt = current_ckpt()
        m = held.evaluate(ckpt)
        eval_log.add(step, m, elapsed_before + run_time())
        scalars.add(step, {f'heldout/{k}': m[k] for k in ('rmse', 'rmse_executed', 'mode_js_bits',
                                                            'score')})
        if m['score'] < best['score']:
            best.update(score=m['score'], step=step)
            ckpt.extra['held_out'] = dict(m, step=step)
            ckpt.save(out / CKPT_NAME)
        if progress:
            kept = 'kept' if best['step'] == step else f'best stays step {best["step"]}'
            print(f'[train] step {step}: held-out rmse {m["rmse_executed"] * 1e3:.1f} mrad '
                  f'(executed steps), mode JS {m["mode_js_bits"]:.3f} bit, score '
                  f'{m["score"]:.4f}: {kept} ({m["eval_s"]:.1f} s)', file=sys.stderr)

    def save(final: bool) -> str:
        if not dist_info.main:
            return str(out / CKPT_NAME)
        path = str(out / CKPT_NAME)
        if held is None:
            path = current_ckpt().save(out / CKPT_NAME)
        elif final and best['step'] is None:        # no evaluation ever scored: the last weights
            path = current_ckpt().save(out / CKPT_NAME)
        atomic_torch_save({
            'version': RESUME_VERSION, 'signature': signature, 'step': step,
            'elapsed_s': elapsed_before + run_time(),
            'model': {k: v.detach().cpu() for k, v in model.state_dict().items()},
            'ema': {k: v.detach().cpu() for k, v in ema.model.state_dict().items()},
            'optimizer': opt.state_dict(),
            'normalizer': {'state': state_norm.state_dict(), 'action': action_norm.state_dict()},
            'torch_rng': torch.get_rng_state(),
            'cuda_rng': torch.cuda.get_rng_state(dev) if dev.type == 'cuda' else None,
            'best': {'score': best['score'], 'step': best['step']},
        }, out / RESUME_NAME)
        if log is not None and (final or time.monotonic() - last_plot[0] > 120.0):
            last_plot[0] = time.monotonic()
            plotted = log.plot(f'{model_cfg.kind} {to_dict(model_cfg)["down_dims"]}, '
                               f'{vision_cfg.encoder if meta.camera_names else "state"}: step {step}')
            if final and not plotted and progress:
                print('[train] matplotlib not installed: loss.png not written (loss.csv is)', file=sys.stderr)
            write_report(out, {'steps': step, 'elapsed_s': round(elapsed_before + run_time(), 1),
                               'precision': precision, 'batch_size': train_cfg.batch_size,
                               'episodes (training / held out)': f'{len(episodes)} / {len(held_out)}',
                               'final loss': log.losses[-1] if log.losses else None,
                               'best_step': best['step'], 'best held-out score': best['score'],
                               'checkpoint': CKPT_NAME + (' (best held-out score)' if held else
                                                          ' (last)')})
        return path

    t_run = time.monotonic()

    def run_time() -> float:
        return time.monotonic() - t_run

    bar = None
    if progress and dist_info.main:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total if total < 10 ** 8 else None, initial=step, unit='step', dynamic_ncols=True, file=sys.stderr,
                       mininterval=0.5 if sys.stderr.isatty() else 10.0)
        except ImportError:  # pragma: no cover
            bar = None

    prefetch = None
    if num_workers > 0:
        from concurrent.futures import ThreadPoolExecutor

        prefetch = ThreadPoolExecutor(max_workers=1)

    def fetch(s: int):
        st, im, ac = data.batch(order.indices(s))
        if st.device != dev:
            st, ac = st.to(dev, non_blocking=True), ac.to(dev, non_blocking=True)
            im = {c: v.to(dev, non_blocking=True) for c, v in im.items()}
        return st, im, ac

    model.train()
    loss_sum, loss_n, t_log, n_log = 0.0, 0, time.monotonic(), 0
    path = None
    pending = prefetch.submit(fetch, step) if prefetch else None
    try:
        while step < total and not (budget_s > 0 and elapsed_before + run_time() >= budget_s):
            lr = train_cfg.lr * lr_factor(progress_frac(step, elapsed_before + run_time()), step,
                                          train_cfg.warmup_steps)
            for g in opt.param_groups:
                g['lr'] = lr
            if prefetch:
                batch = pending.result()
                pending = prefetch.submit(fetch, step + 1)
            else:
                batch = fetch(step)
            with autocast(precision, dev):
                loss = objective(*batch)
            if not torch.isfinite(loss):
                raise TrainError(f'loss became {loss.item()} at step {step} (lr {lr:.3g}); lower --lr')
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if train_cfg.grad_clip_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip_norm)
            opt.step()
            ema.update(model, step)
            step += 1
            lv = float(loss.detach())
            loss_sum, loss_n, n_log = loss_sum + lv, loss_n + 1, n_log + batch[0].shape[0]
            if callback is not None:
                callback(step, lv)
            if bar is not None:
                bar.update(1)
            if step % train_cfg.log_every == 0 or step == total:
                now = time.monotonic()
                sps = n_log * dist_info.world_size / max(1e-9, now - t_log)
                if log is not None:
                    log.add(step, loss_sum / loss_n, lr, elapsed_before + run_time(), sps)
                    scalars.add(step, {'train/loss': loss_sum / loss_n, 'train/lr': lr,
                                       'train/samples_per_s': sps})
                if bar is not None:
                    bar.set_postfix(loss=f'{loss_sum / loss_n:.4f}', lr=f'{lr:.2e}', samples_s=f'{sps:.0f}',
                                    refresh=False)
                loss_sum, loss_n, t_log, n_log = 0.0, 0, now, 0
            if held is not None and step % train_cfg.eval_every == 0:
                evaluate()
            if step % train_cfg.checkpoint_every == 0:
                path = save(final=False)
    except KeyboardInterrupt:
        save(final=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        if prefetch is not None:
            prefetch.shutdown(wait=True, cancel_futures=True)
    if loss_n and log is not None:
        log.add(step, loss_sum / loss_n, lr, elapsed_before + run_time(),
                n_log * dist_info.world_size / max(1e-9, time.monotonic() - t_log))
    if held is not None and step > 0 and step % train_cfg.eval_every != 0:
        evaluate()                                      # the final weights get their turn
    path = save(final=True)
    if scalars is not None:
        scalars.close()
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return path
