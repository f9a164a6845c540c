"""Benchmark of the Diffusion Policy core: chunk latency per backend and training throughput.

    python bench/bench_policy.py [--threads 2] [--repeats 20] [--rounds 3] [--quick] [--train-seconds 20]

Latency: one 16-step chunk with 10 DDIM steps (median wall time of DiffusionPolicy.predict's
backend call, after warm-up; the lowest of --rounds medians, since on a shared 2-core VM one round
can land on a burst of load), untrained weights of the real architectures:
  cpu_default (U-Net 64/128/256) at batch 1 and 8, paper (U-Net 256/512/1024) at batch 1,
  state-only (3 joints) and with one 96x96 camera (small CNN / ResNet-18 GN), for eager torch,
  torch.jit (trace + freeze) and ONNX Runtime side by side, and the backend the policy picks.
Targets (issue 3, 2-core CPU, fp32): cpu_default b1 <= 15 ms, paper b1 <= 120 ms, cpu_default b8 <= 55 ms.
Training: samples/s of trainer.train for cpu_default and paper (bench_train.py).

Numbers depend on the load of the machine: the load average is printed with the table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from dp_policy.sampling.backends import time_backend
from dp_policy.checkpoint import create_untrained_checkpoint, load_checkpoint
from dp_policy.policy import DiffusionPolicy

JOINTS = ['joint1', 'joint2', 'joint3']
TARGET_MS = {('cpu_default', 1): 15.0, ('paper', 1): 120.0, ('cpu_default', 8): 55.0}


def best_median_ms(backend, args: tuple, repeats: int, rounds: int) -> float:
    return 1e3 * min(time_backend(backend, args, repeats) for _ in range(max(1, rounds)))


def latency_rows(tmp: Path, cases, repeats: int, threads: int, rounds: int = 3) -> list[tuple]:
    rows = []
    for name, cams, batch in cases:
        path = create_untrained_checkpoint(tmp / f'{name}-{len(cams)}.ckpt', JOINTS, cams,
                                           (96, 96) if cams else None, preset=name)
        pol = DiffusionPolicy(load_checkpoint(path), backend='auto', num_threads=threads)
        m = pol.meta
        state = torch.zeros(batch, m.n_obs_steps, m.state_dim)
        noise = torch.randn(batch, 1, m.horizon, m.action_dim)
        imgs = [torch.zeros(batch, m.n_obs_steps, 96, 96, 3, dtype=torch.uint8) for _ in cams]
        ms = {}
        for backend in ('torch', 'torch-jit', 'onnxruntime'):
            try:
                ms[backend] = best_median_ms(pol._get_backend(backend), (state, noise, imgs), repeats, rounds)
            except Exception as exc:  # noqa: BLE001 - report, keep benchmarking the others
                print(f'  {name} b{batch} {backend}: failed ({type(exc).__name__}: {exc})', file=sys.stderr)
                ms[backend] = float('nan')
        choice = pol.warmup(batch_sizes=(batch,), repeats=max(3, repeats // 4))[batch]
        vision = pol.ckpt.vision_cfg.encoder if cams else 'state only'
        rows.append((name, vision, batch, ms['torch'], ms['torch-jit'], ms['onnxruntime'], choice,
                     TARGET_MS.get((name, batch))))
        print(f'  measured {name} {vision} b{batch}: torch {ms["torch"]:.1f} ms, torch-jit '
              f'{ms["torch-jit"]:.1f} ms, onnxruntime {ms["onnxruntime"]:.1f} ms, picked {choice}',
              file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=20, help='timed calls per round')
    p.add_argument('--rounds', type=int, default=3, help='rounds per backend; the lowest median is reported')
    p.add_argument('--train-seconds', type=float, default=20.0, help='training time per preset (0: skip)')
    p.add_argument('--quick', action='store_true', help='fewer repeats, no paper-size training')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    cases = [('cpu_default', [], 1), ('cpu_default', [], 8), ('cpu_default', ['front'], 1),
             ('cpu_default', ['front'], 8), ('paper', [], 1), ('paper', ['front'], 1)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lat = latency_rows(tmp, cases, repeats, args.threads, 1 if args.quick else args.rounds)
        tr = []
        if args.train_seconds > 0:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_train import train_rows

            tr = train_rows(tmp, args.train_seconds, ['cpu_default'] if args.quick else ['cpu_default', 'paper'])
    load = os.getloadavg()
    print(f'\nDiffusion Policy core, torch {torch.__version__}, {args.threads} thread(s), '
          f'{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}')
    print('\nOne chunk (horizon 16, DDIM 10 steps, 1 sample), ms (median of a round, lowest of the rounds):')
    print(f'| {"preset":<11} | {"vision":<10} | {"batch":>5} | {"torch":>8} | {"torch-jit":>9} | '
          f'{"onnxruntime":>11} | {"picked":<11} | {"target":>6} |')
    print(f'|{"-" * 13}|{"-" * 12}|{"-" * 7}|{"-" * 10}|{"-" * 11}|{"-" * 13}|{"-" * 13}|{"-" * 8}|')
    for name, vision, b, t, j, o, choice, target in lat:
        tgt = f'{target:.0f}' if target and vision == 'state only' else ''
        print(f'| {name:<11} | {vision:<10} | {b:>5} | {t:>8.1f} | {j:>9.1f} | {o:>11.1f} | {choice:<11} | {tgt:>6} |')
    if tr:
        from bench_train import print_table

        print_table(tr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
