"""Training throughput of the Diffusion Policy trainer (samples/s), on synthetic episodes.

    python bench/bench_train.py [--presets cpu_default,paper] [--seconds 20] [--device cpu|cuda]
                                [--threads 2] [--cameras 1] [--batch-size 64]

Trains each preset for --seconds on 16 synthetic episodes of 60 steps (3 joints, --cameras 96x96
cameras; random crop, EMA, AdamW, exactly as dp_train) and prints steps/s and samples/s after two
warm-up steps. No bags are read: decoding speed is the dataset's business (dp_train prints it).
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

from dp_policy_node.checkpoint import load_checkpoint
from dp_policy_node.config import preset
from dp_policy_node.episode import Episode, EpisodeSetMeta

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
    from dp_policy_node import trainer

    eps, meta = synthetic_episodes(cameras=cameras)
    rows = []
    for name in presets:
        c = preset(name)
        stamps = []
        tc = replace(c.train, steps=10 ** 9, max_minutes=seconds / 60.0, warmup_steps=10,
                     checkpoint_every=10 ** 9, log_every=10 ** 9, batch_size=batch_size or c.train.batch_size)
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
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        rows = train_rows(Path(d), args.seconds, [s for s in args.presets.split(',') if s], args.device,
                          args.cameras, args.batch_size)
    load = os.getloadavg()
    print(f'\ntorch {torch.__version__}, device {args.device}, {args.threads} thread(s), load average '
          f'{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}')
    print_table(rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
