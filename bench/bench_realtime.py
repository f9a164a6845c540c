"""Real-time sampling costs: a consistency student's chunk latency at 1, 2 and 3 steps beside its
teacher's DDIM-10, and what real-time chunking (RTC) adds per chunk.

    python bench/bench_realtime.py [--checkpoint models/reach_image.ckpt] [--student CKPT]
                                   [--repeats 30] [--rounds 3] [--threads 1]

Latency: DiffusionPolicy.predict at batch 1, one sample (the lowest of --rounds medians of
--repeats calls, after warm-up), the backend each policy picks at warm-up (as policy_node does);
the observation is the checkpoint's shape (latency does not depend on the pixels). Without
--student the 1-3 step rows run the teacher's own network with the consistency sampler: the same
graph and cost as a student distilled from it (dp_train distill keeps the architecture); with
--student that checkpoint at its own step count and at 1-3 steps.
RTC: predict with a chunk in execution and an expected delay of 0.2 s (eager torch, the
guidance differentiates through the network) against the same policy without RTC (its picked
backend) and against eager torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import numpy as np
import torch

from dp_policy.checkpoint import load_checkpoint
from dp_policy.policy import DiffusionPolicy


def inputs(pol: DiffusionPolicy):
    m = pol.meta
    rng = np.random.default_rng(0)
    state = np.zeros((1, m.n_obs_steps, m.state_dim), np.float32)
    images = {c: rng.integers(0, 256, (1, m.n_obs_steps, *m.image_hw, 3), dtype=np.uint8)
              for c in m.camera_names}
    return state, images


def best_median_ms(call, repeats: int, rounds: int) -> float:
    call()
    medians = []
    for _ in range(max(1, rounds)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return 1e3 * min(medians)


def policy(ckpt, kind: str, steps: int, threads: int, backend: str = 'auto') -> DiffusionPolicy:
    sched = dataclasses.replace(ckpt.sched_cfg, kind=kind, num_inference_steps=steps)
    pol = DiffusionPolicy(dataclasses.replace(ckpt, sched_cfg=sched), backend=backend,
                          num_threads=threads)
    if backend == 'auto':
        pol.warmup(batch_sizes=(1,))
    return pol


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', default='models/reach_image.ckpt', help='the teacher')
    p.add_argument('--student', help='a distilled student (dp_train distill) to time as well')
    p.add_argument('--repeats', type=int, default=30)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, default=1, help="torch/ONNX Runtime threads (policy_node's default 1)")
    args = p.parse_args(argv)
    teacher = load_checkpoint(args.checkpoint)
    student = load_checkpoint(args.student) if args.student else None
    rows = []

    def timed(label: str, pol: DiffusionPolicy, **kw) -> float:
        state, images = inputs(pol)
        name = pol.predict(state, images, **kw).backend
        ms = best_median_ms(lambda: pol.predict(state, images, **kw), args.repeats, args.rounds)
        rows.append((label, pol.scheduler, pol.num_inference_steps, name, ms))
        print(f'  {label}: {ms:.2f} ms ({name})', file=sys.stderr, flush=True)
        return ms

    base = teacher.sched_cfg.num_inference_steps
    t_ms = timed(f'teacher DDIM-{base}', policy(teacher, teacher.sched_cfg.kind, base, args.threads))
    net = student if student is not None else teacher
    what = 'student' if student is not None else "teacher's network, consistency sampler"
    for k in (1, 2, 3):
        timed(f'{what}, {k} step(s)', policy(net, 'consistency', k, args.threads))
    # RTC: a chunk in execution 0.1 s before, 0.2 s expected delay
    rtc_rows = {}
    for label, backend in (('without RTC (picked backend)', 'auto'), ('without RTC (torch)', 'torch'),
                           ('with RTC', 'torch')):
        pol = policy(teacher, teacher.sched_cfg.kind, base, args.threads, backend)
        state, images = inputs(pol)
        pol.predict(state, images, stamps=[0.0])

        def call(pol=pol, rtc=label == 'with RTC'):
            pol._prev[''] = pol._prev.get('') or (0.0, np.zeros((pol.meta.horizon, pol.meta.action_dim)))
            return pol.predict(state, images, stamps=[0.1], rtc_delay_s=[0.2] if rtc else None)
        name = call().backend
        ms = best_median_ms(call, args.repeats, args.rounds)
        rtc_rows[label] = ms
        rows.append((f'teacher DDIM-{base} {label}', pol.scheduler, base, name, ms))
        print(f'  RTC {label}: {ms:.2f} ms ({name})', file=sys.stderr, flush=True)

    load = os.getloadavg()[0]
    print(f'\nchunk latency, batch 1, 1 sample, {args.threads} thread(s), '
          f'{args.checkpoint}{f" / {args.student}" if student else ""}; load average {load:.2f}\n')
    print('| policy | sampler | steps | backend | p50 of rounds (ms) | vs teacher |')
    print('|---|---|---|---|---|---|')
    for label, sched, steps, name, ms in rows:
        print(f'| {label} | {sched} | {steps} | {name} | {ms:.2f} | {ms / t_ms:.2f}x |')
    extra = rtc_rows['with RTC'] - rtc_rows['without RTC (picked backend)']
    print(f'\nRTC adds {extra:.2f} ms per chunk over the picked backend '
          f'({rtc_rows["with RTC"] - rtc_rows["without RTC (torch)"]:.2f} ms over eager torch).')
    return 0


if __name__ == '__main__':
    torch.set_num_threads(1)
    sys.exit(main())
