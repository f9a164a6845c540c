"""Training throughput of the Diffusion Policy trainer (samples/s), on synthetic episodes, beside a
plain eager PyTorch training step of the same network and batch.

    python bench/bench_train.py [--presets cpu_default,paper] [--seconds 20] [--device cpu|cuda]
                                [--threads 2] [--cameras 1] [--batch-size 64] [--no-reference]

Trains each preset for --seconds on 16 synthetic episodes of 60 steps (3 joints, --cameras 96x96
cameras; random crop, EMA, AdamW, exactly as dp_train: the preset's precision, fused AdamW) and
prints steps/s and samples/s after two warm-up steps. In the same run, for each preset, the
reference: the same network and batch in the plain shape of the reference ConditionalUnet1D
training loop (forward, MSE on the noise, torch.optim.AdamW with its defaults, EMA update), float32,
eager. No bags are read: decoding speed is the dataset's business (dp_train prints it).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dp_policy.checkpoint import load_checkpoint
from dp_policy.config import preset
from dp_policy.data.episode import Episode, EpisodeSetMeta

JOINTS = ['joint1', 'joint2', 'joint3']


def synthetic_episodes(n: int = 16, T: int = 60, cameras: int = 1) -> tuple[list[Episode], EpisodeSetMeta]:
    rng = np.random.default_rng(0)
    cams = [f'cam{i}' for i in range(cameras)]
    eps = [Episode(name=f'e{i}', t=np.arange(T) * 0.1,
                   state=rng.standard_normal((T, 3)).astype(np.float32),
                   action=rng.standard_normal((T, 3)).astype(np.float32),
                   images={c: rng.integers(0, 256, (T, 96, 96, 3), dtype=np.uint8) for c in cams})
           for i in range(n)]
    return eps, EpisodeSetMeta(JOINTS, cams, (96, 96) if cams else None, 0.1, 'bench')


def train_rows(tmp: Path, seconds: float, presets: list[str], device: str = 'cpu', cameras: int = 1,
               batch_size: int | None = None) -> list[tuple]:
    import dp_policy.training.trainer as trainer

    eps, meta = synthetic_episodes(cameras=cameras)
    rows = []
    for name in presets:
        c = preset(name)
        stamps = []
        tc = replace(c.train, steps=10 ** 9, max_minutes=seconds / 60.0, warmup_steps=10,
                     holdout_episodes=0, checkpoint_every=10 ** 9, log_every=10 ** 9,
                     batch_size=batch_size or c.train.batch_size)
        t0 = time.monotonic()
        trainer.train(eps, meta, c.model, c.vision, c.scheduler, tc, tmp / f'train-{name}', device=device,
                      progress=False, resume=False, callback=lambda s, loss: stamps.append(time.monotonic()))
        total = time.monotonic() - t0
        n = len(stamps)
        sps = (n - 2) * tc.batch_size / (stamps[-1] - stamps[1]) if n > 3 else float('nan')
        params = sum(p.numel() for p in load_checkpoint(tmp / f'train-{name}' / 'policy.ckpt').build_model()
                     .parameters())
        vision = c.vision.encoder if cameras else 'state'
        rows.append((name, vision, params / 1e6, tc.batch_size, n, sps, sps / tc.batch_size, total))
        print(f'  trained {name}: {n} steps', file=sys.stderr, flush=True)
    return rows


def reference_rows(seconds: float, presets: list[str], device: str = 'cpu', cameras: int = 1,
                   batch_size: int | None = None) -> list[tuple]:
    """The plain eager step of each preset's network: float32, torch.optim.AdamW (default
    implementation), EMA update; the batch gathered from the same in-memory episodes."""
    import dp_policy.training.trainer as trainer
    from dp_policy.model.models import build_model
    from dp_policy.data.normalizer import MinMaxNormalizer
    from dp_policy.sampling.schedulers import NoiseScheduler

    eps, meta = synthetic_episodes(cameras=cameras)
    rows = []
    for name in presets:
        c = preset(name)
        b = batch_size or c.train.batch_size
        torch.manual_seed(0)
        model = build_model(3, 3, list(meta.camera_names), meta.image_hw, c.model, c.vision).to(device)
        sched = NoiseScheduler(c.scheduler).to(device)
        norm = MinMaxNormalizer.fit(np.concatenate([e.state for e in eps]))
        data = trainer.EpisodeWindows(eps, c.model.n_obs_steps, c.model.horizon,
                                      c.model.n_action_steps, norm, norm, meta.camera_names, device)
        order = trainer.BatchOrder(len(data), b, 0)
        opt = torch.optim.AdamW(model.parameters(), lr=c.train.lr)
        ema = trainer.EMA(model, c.train.ema_decay)
        model.train()
        stamps, step, t_end = [], 0, time.monotonic() + seconds
        while time.monotonic() < t_end:
            state, images, action = data.batch(order.indices(step))
            loss = model.loss(state, images, action, sched)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update(model, step)
            step += 1
            stamps.append(time.monotonic())
        n = len(stamps)
        sps = (n - 2) * b / (stamps[-1] - stamps[1]) if n > 3 else float('nan')
        rows.append((name, b, n, sps))
        print(f'  reference {name}: {n} steps', file=sys.stderr, flush=True)
    return rows


def print_reference(rows: list[tuple], ref: list[tuple]) -> None:
    print('\nThe trainer beside a plain eager step of the same network and batch (float32, '
          'torch.optim.AdamW, EMA), same run:')
    print(f'| {"preset":<11} | {"trainer samples/s":>17} | {"eager samples/s":>15} | {"speed-up":>8} |')
    print(f'|{"-" * 13}|{"-" * 19}|{"-" * 17}|{"-" * 10}|')
    mine = {r[0]: r[5] for r in rows}
    for name, b, n, sps in ref:
        print(f'| {name:<11} | {mine.get(name, float("nan")):>17.1f} | {sps:>15.1f} | '
              f'{mine.get(name, float("nan")) / sps:>7.2f}x |')


def print_table(rows: list[tuple]) -> None:
    print('\nTraining (3 joints + 96x96 camera(s), random crop, EMA, AdamW), after 2 warm-up steps:')
    print(f'| {"preset":<11} | {"vision":<9} | {"params M":>8} | {"batch":>5} | {"steps":>5} | '
          f'{"samples/s":>9} | {"steps/s":>7} | {"wall s":>6} |')
    print(f'|{"-" * 13}|{"-" * 11}|{"-" * 10}|{"-" * 7}|{"-" * 7}|{"-" * 11}|{"-" * 9}|{"-" * 8}|')
    for name, vision, params, b, n, sps, stps, total in rows:
        print(f'| {name:<11} | {vision:<9} | {params:>8.2f} | {b:>5} | {n:>5} | {sps:>9.1f} | '
              f'{stps:>7.2f} | {total:>6.1f} |')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--presets', default='cpu_default,paper')
    p.add_argument('--seconds', type=float, default=20.0)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--cameras', type=int, default=1)
    p.add_argument('--batch-size', type=int)
    p.add_argument('--no-reference', action='store_true', help='skip the plain eager reference')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    presets = [s for s in args.presets.split(',') if s]
    with tempfile.TemporaryDirectory() as d:
        rows = train_rows(Path(d), args.seconds, presets, args.device, args.cameras, args.batch_size)
    ref = [] if args.no_reference else reference_rows(args.seconds, presets, args.device,
                                                      args.cameras, args.batch_size)
    load = os.getloadavg()
    print(f'\ntorch {torch.__version__}, device {args.device}, {args.threads} thread(s), load average '
          f'{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}')
    print_table(rows)
    if ref:
        print_reference(rows, ref)
    return 0


if __name__ == '__main__':
    sys.exit(main())
