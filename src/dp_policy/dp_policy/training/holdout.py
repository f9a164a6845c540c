"""Held-out evaluation during training: is this checkpoint better than the last one?

What it is (ROS-free): `split_holdout(episodes, n, seed)` keeps n episodes (chosen by seed) out of
training; `HeldOut(episodes, ...)` evaluates a checkpoint on them the way it will be deployed: the
EMA weights through `DiffusionPolicy` (DDIM with the checkpoint's inference steps, the same code as
the node), `samples` chunks per observation window, on every `stride`-th step of every held-out
episode (at most `max_windows`). Numbers (dp_common.metrics, as dp_eval's offline replay):

    rmse            chosen chunk vs the demonstrated commands, whole horizon (rad)
    rmse_executed   the steps that run (n_action_steps from "now"), the part that matters
    mode_js_bits    Jensen-Shannon divergence between the demonstrated futures' modes and the
                    sampled ones (k-means, 2 modes: 0 = the samples cover both as the
                    demonstrations do, 1 = disjoint)
    score           rmse_executed + MODE_WEIGHT_RAD * mode_js_bits (lower is better)

MODE_WEIGHT_RAD = 0.05: a policy that drops one side of a two-sided task (JS ~0.3-0.5) scores
15-25 mrad worse, more than a typical gain in executed-step error between two checkpoints of one
run (a few mrad); between policies that cover both modes the error decides.

Cost: one predict() per 64 windows; 150 windows x 4 samples x DDIM-10 take ~3-6 s on 2 CPU cores
for the cpu_default network. The global torch RNG is left as it was (the policy samples with its
own generator, and the network's construction runs under fork_rng), so training continues
bit-identically with or without evaluations.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from dp_common import metrics

from dp_policy.data.episode import Episode

__all__ = ['MODE_WEIGHT_RAD', 'HeldOut', 'split_holdout']

MODE_WEIGHT_RAD = 0.05


def split_holdout(episodes: Sequence[Episode], n: int, seed: int) -> tuple[list[Episode], list[Episode]]:
    """(training episodes, held-out episodes): n chosen by seed, at most half of them, in their
    original order."""
    episodes = list(episodes)
    n = min(int(n), len(episodes) // 2)
    if n <= 0:
        return episodes, []
    pick = set(np.random.default_rng([int(seed), 7]).choice(len(episodes), n, replace=False).tolist())
    return ([e for i, e in enumerate(episodes) if i not in pick],
            [e for i, e in enumerate(episodes) if i in pick])


class HeldOut:
    """Observation windows of held-out episodes and their demonstrated futures."""

    def __init__(self, episodes: Sequence[Episode], n_obs_steps: int, horizon: int,
                 n_action_steps: int, camera_names: Sequence[str], samples: int = 4,
                 max_windows: int = 160, stride: int = 0, seed: int = 0, batch: int = 64):
        self.n_obs, self.horizon, self.n_act = n_obs_steps, horizon, n_action_steps
        self.samples, self.seed, self.batch = samples, seed, batch
        self.cameras = list(camera_names)
        total = sum(max(0, len(e) - n_obs_steps + 1) for e in episodes)
        stride = stride or max(1, int(np.ceil(total / max(1, max_windows))))
        self.state, self.truth, self.mask, self.stamps = [], [], [], []
        self.images = {c: [] for c in self.cameras}
        f = n_obs_steps - 1
        for ep in episodes:
            for k in range(n_obs_steps - 1, len(ep), stride):
                self.state.append(ep.state[k - f:k + 1])
                for c in self.cameras:
                    self.images[c].append(ep.images[c][k - f:k + 1])
                idx = np.arange(horizon) + k - f
                self.mask.append((idx >= 0) & (idx < len(ep)))
                self.truth.append(ep.action[np.clip(idx, 0, len(ep) - 1)])
                self.stamps.append(float(ep.t[k]))
        self.state = np.asarray(self.state, dtype=np.float32)                  # (N, To, S)
        self.images = {c: np.asarray(v) for c, v in self.images.items()}        # (N, To, H, W, 3)
        self.truth = np.asarray(self.truth, dtype=np.float64)                  # (N, T, A)
        self.mask = np.asarray(self.mask, dtype=bool)                          # (N, T)

    def __len__(self) -> int:
        return len(self.state)

    def evaluate(self, ckpt) -> dict:
        """The numbers of the module docstring for a Checkpoint (its EMA weights)."""
        import torch
        with torch.random.fork_rng(devices=[]):     # building the network draws initial weights
            return self._evaluate(ckpt)

    def _evaluate(self, ckpt) -> dict:
        from dp_policy.policy import DiffusionPolicy
        t0 = time.monotonic()
        policy = DiffusionPolicy(ckpt, backend='torch', num_samples=self.samples, seed=self.seed)
        preds, samples = [], []
        for i in range(0, len(self), self.batch):
            sl = slice(i, i + self.batch)
            out = policy.predict(self.state[sl], {c: v[sl] for c, v in self.images.items()},
                                 stamps=np.asarray(self.stamps[sl]),
                                 robot_ids=[f'w{j}' for j in range(i, i + len(self.state[sl]))])
            preds.append(np.asarray(out.actions, dtype=np.float64))
            samples.append(np.asarray(out.samples, dtype=np.float64))
        pred, samp = np.concatenate(preds), np.concatenate(samples)
        err = metrics.horizon_errors(pred, self.truth, self.mask)
        f = self.n_obs - 1
        ex = slice(f, f + self.n_act)
        m = self.mask[:, ex]
        d = (pred[:, ex] - self.truth[:, ex])[m]
        rmse_exec = float(np.sqrt(np.mean(d ** 2))) if d.size else float('nan')
        full = self.mask.all(axis=1)
        mode = metrics.mode_divergence(self.truth[full], samp[full], k=2, chosen=pred[full],
                                       seed=self.seed) if full.sum() >= 4 else {'js_bits': 0.0}
        js = float(mode['js_bits'])
        return {'rmse': float(err['rmse']), 'rmse_executed': rmse_exec, 'mode_js_bits': js,
                'score': rmse_exec + MODE_WEIGHT_RAD * js, 'windows': int(len(self)),
                'eval_s': time.monotonic() - t0}
