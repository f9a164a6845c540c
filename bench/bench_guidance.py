"""Benchmark of guided sampling (dp_policy.guidance): chunk latency with and without guidance.

    python bench/bench_guidance.py [--checkpoint models/reach_image.ckpt] [--threads 1]
                                   [--repeats 20] [--samples 1 4]

For the embedded arm (its URDF, the post as an upright cylinder obstacle) and a checkpoint (default:
the committed one, cpu_default with one 96x96 camera), on the task's first observations (the
simulation's image at the start pose, one episode seed a chunk): median and p99 wall time of
DiffusionPolicy.predict at batch 1, for K samples per observation,
  - unguided on ONNX Runtime (the whole sampling graph; the node's default on the CPU),
  - guided, final step only (GuidanceConfig steps=1, policy_node's guidance_steps default): the
    whole graph on ONNX Runtime, then the final clean chunk guided,
  - guided on the last half of the steps: ONNX Runtime one step at a time (OnnxStepBackend),
  - the same on eager torch,
and the cost of one evaluation of the costs and their gradient (the unit guidance pays per
gradient step). Target (issue 19): guidance adds at most 50 % to the unguided chunk at batch 1.

Numbers depend on the load of the machine: the load average is printed with the table.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from dp_policy.guidance.costs import total_cost
from dp_policy.guidance.guide import GuidanceConfig
from dp_policy.guidance.setup import guidance_from_urdf
from dp_policy.policy import DiffusionPolicy

ROOT = Path(__file__).resolve().parents[1]
URDF = ROOT / 'src' / 'dp_sim' / 'description' / 'arm.urdf'
POST = 'cylinder 0.31 0 0.03 0.025 0.03'
START_Q = np.array([-0.93, 2.58, -1.65])          # the task's start pose (rad)


def observations(policy: DiffusionPolicy, n: int) -> list[tuple[np.ndarray, dict]]:
    """n first observations of the task (dp_sim's scene at the start pose, episode seeds 0..n-1:
    the target moves), as the policy sees them in closed loop."""
    from dp_sim.env import ArmTaskEnv
    m = policy.meta
    env = ArmTaskEnv(seed=0)
    out = []
    for seed in range(n):
        env.reset(seed=seed)
        state = np.repeat(env.q[None, None, :m.state_dim], m.n_obs_steps, axis=1).astype(np.float32)
        image = env.render()
        images = {c: np.repeat(image[None, None], m.n_obs_steps, axis=1) for c in m.camera_names}
        out.append((state, images))
    return out


def latency(policy: DiffusionPolicy, repeats: int) -> tuple[str, float, float]:
    times, backend = [], ''
    obs = observations(policy, repeats + 3)
    for i in range(repeats + 3):
        out = policy.predict(*obs[i])
        backend = out.backend
        if i >= 3:
            times.append(out.latency_s)
    return backend, 1e3 * float(np.median(times)), 1e3 * float(np.percentile(times, 99))


def cost_eval_ms(constraints, weights, repeats: int = 50) -> float:
    q = torch.tensor(np.tile(START_Q, (1, 16, 1)))
    t0 = time.perf_counter()
    for _ in range(repeats):
        x = q.clone().requires_grad_(True)
        torch.autograd.grad(total_cost(x, constraints, weights).sum(), x)
    return 1e3 * (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', default=str(ROOT / 'models' / 'reach_image.ckpt'))
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--samples', type=int, nargs='+', default=[1, 4])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for k in a.samples:
        base = None
        for backend, steps in (('onnxruntime', None), ('auto', 1), ('auto', 0), ('torch', 0)):
            pol = DiffusionPolicy.from_checkpoint(a.checkpoint, backend=backend, num_samples=k,
                                                  num_threads=a.threads)
            if backend == 'auto':
                pol.warmup(batch_sizes=[1])        # as policy_node: auto measures, then picks
            label = 'unguided'
            if steps is not None:
                cfg, constraints, dims = guidance_from_urdf(
                    URDF, 'tool0', pol.meta.joint_names, pol.meta.dt_s, [POST],
                    config=GuidanceConfig(steps=steps))
                pol.set_guidance(cfg, constraints, dims)
                label = ('final step' if pol.guidance.final_step_only else
                         f'last {pol.num_inference_steps - pol.guidance.first_step} steps')
            name, p50, p99 = latency(pol, a.repeats)
            base = p50 if base is None else base
            rows.append((k, label, name, p50, p99, 100.0 * (p50 / base - 1.0)))
    load = os.getloadavg()
    print(f'\nguided sampling, batch 1, {a.threads} thread(s), load average {load[0]:.2f} (1 min)')
    print('| samples K | guidance | backend | p50 (ms) | p99 (ms) | vs unguided p50 |')
    print('|---|---|---|---|---|---|')
    for k, label, name, p50, p99, extra in rows:
        print(f'| {k} | {label} | {name} | {p50:.1f} | {p99:.1f} | {extra:+.0f} % |')
    print(f'\none evaluation of the costs + gradient (16 actions, 3 joints, 1 obstacle): '
          f'{cost_eval_ms(constraints, cfg.weights):.2f} ms')
    print('target (issue 19): guided <= +50 % of the unguided chunk at batch 1')


if __name__ == '__main__':
    main()
