"""DiffusionPolicy: the object nodes and evaluation use to turn observations into action chunks.

ROS-free. Loads a checkpoint, normalises inputs, runs B robots x K samples through the denoising
graph in one batch (sampling/backends.py), unnormalises, and picks per robot the sample most coherent with
the still-unexecuted part of that robot's previous chunk.

Timeline (n_obs_steps=2, horizon=16, n_action_steps=8; one column per dt_s, t = stamp of the newest obs):

    time      t-1  t   t+1 ...  t+7  t+8 ...  t+14
    obs        o   o
    chunk      a0  a1  a2  ...  a8   a9  ...  a15      actions[:, i] is for t + (i - first_action_index)*dt_s
    executed       |<-- n_action_steps -->|            first_action_index = n_obs_steps - 1 = 1

Sample choice (K > 1): for each robot, the new samples are compared with the previous chunk at the
same absolute times (previous chunk linearly interpolated at the new chunk's times >= t, only where
both exist); the sample with the smallest mean squared distance wins. First chunk, after reset(), a
clock going backwards, no stamps, or no overlap: sample 0. With guidance (set_guidance) the same
rule among the samples that break no hard constraint, along their own path or at the points
between the previous chunk and them (transition_points: where the follower passes when it switches
from one to the other), the lowest cost where there is no previous chunk; when none is left, or
when the chosen one's mean with all the running chunks (a temporal ensemble) comes closer to an
obstacle than the margin, the robot's chunk is gated (PolicyOutput.gated) and its previous chunk
stays the reference.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from dp_policy.sampling.backends import (OnnxBackend, OnnxStepBackend, Sampler, TorchBackend,
                                         TorchJitBackend, time_backend)
from dp_policy.checkpoint import Checkpoint, load_checkpoint
from dp_policy.guidance.guide import select
from dp_policy.model.encoders import resize_uint8

BACKENDS = ('auto', 'torch', 'onnxruntime', 'cuda-graph')


@dataclass(frozen=True)
class PolicyMeta:
    joint_names: list[str]
    camera_names: list[str]
    image_hw: tuple[int, int] | None
    n_obs_steps: int
    horizon: int
    n_action_steps: int
    dt_s: float
    state_dim: int
    action_dim: int
    fingerprint: str
    train_steps: int = 0
    # None: actions and state are joint positions (joint_names); else the checkpoint's
    # end-effector space (dp_common.ee_space.EndEffectorSpace.to_dict()): tip pose vectors
    action_space: dict | None = None
    # None, or {camera: dp_common.robot_mask.mask_spec}: its images must come with the robot
    # painted out (the caller's job: it has the robot's URDF and joint positions)
    robot_mask: dict | None = None

    @property
    def space_kind(self) -> str:
        return 'joint' if self.action_space is None else str(self.action_space['kind'])


@dataclass
class PolicyOutput:
    actions: np.ndarray            # (B, horizon, A) float64 rad, the chosen sample per robot
    samples: np.ndarray            # (B, K, horizon, A) float64 rad
    chosen: np.ndarray             # (B,) int
    first_action_index: int        # actions[:, first_action_index] is for stamps[b]
    latency_s: float
    backend: str
    num_inference_steps: int
    scheduler: str
    stamps: np.ndarray | None = None   # (B,) float64, as given
    robot_ids: list[str] = field(default_factory=list)
    # With guidance (DiffusionPolicy.set_guidance): per robot, no sample met the hard constraints
    # (the chunk must not be executed), and the assessment of every sample (guide.assess: cost,
    # violates, limit_margin_rad, clearance_m, each (B, K)).
    gated: np.ndarray | None = None        # (B,) bool
    assessment: dict | None = None
    # Real-time chunking (predict(rtc_delay_s=...)): per robot, the actions frozen to the chunk in
    # execution (actions[b, :frozen[b]] equal it; 0: none, sampled as usual).
    frozen: np.ndarray | None = None       # (B,) int


def coherent_sample(samples: np.ndarray, stamp: float, prev_stamp: float, prev_actions: np.ndarray,
                    dt_s: float, first_action_index: int) -> tuple[int, int]:
    """Index of the sample closest to the previous chunk on overlapping future times, and the overlap.

    samples (K, T, A) for times stamp + (i - f)*dt; prev_actions (T', A) for prev_stamp + (j - f)*dt.
    Returns (0, 0) when nothing overlaps.
    """
    d, overlap = coherence_distances(samples, stamp, prev_stamp, prev_actions, dt_s, first_action_index)
    return (int(np.argmin(d)), overlap) if overlap else (0, 0)


def coherence_distances(samples: np.ndarray, stamp: float, prev_stamp: float, prev_actions: np.ndarray,
                        dt_s: float, first_action_index: int) -> tuple[np.ndarray, int]:
    """Mean squared distance (rad^2) of each sample (K,) to the previous chunk on their overlapping
    future times, and the number of overlapping points (0: distances all 0)."""
    i, ref = reference_at(samples.shape[1], stamp, prev_stamp, prev_actions, dt_s,
                          first_action_index)
    if not len(i):
        return np.zeros(samples.shape[0]), 0
    d = ((samples[:, i, :] - ref[None]) ** 2).mean(axis=(1, 2))      # (K,)
    return d, int(len(i))


def reference_at(T: int, stamp: float, prev_stamp: float, prev_actions: np.ndarray, dt_s: float,
                 first_action_index: int, start: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The previous chunk at the times of a new chunk's actions from its stamp on (from index
    `start` where given), where both exist: (indices i of the new chunk (M,), (M, A) previous
    actions linearly interpolated at those times)."""
    f = first_action_index
    i = np.arange(f if start is None else start, T)                  # future (and now) indices of the new chunk
    u = (stamp - prev_stamp) / dt_s + i                              # fractional index into prev chunk
    last = prev_actions.shape[0] - 1
    ok = (u >= -1e-6) & (u <= last + 1e-6)
    i, u = i[ok], np.clip(u[ok], 0, last)
    j0 = np.floor(u).astype(int)
    j1 = np.minimum(j0 + 1, last)
    w = (u - j0)[:, None]
    return i, prev_actions[j0] * (1 - w) + prev_actions[j1] * w


TRANSITION_WEIGHTS = (0.25, 0.5, 0.75)


def transition_points(samples: np.ndarray, stamp: float, running: list, dt_s: float,
                      first_action_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint-space points the follower may command on its way into each sample, on the times it
    shares with the chunks still running (`running`: (stamp, actions) of the chunks published
    before, the newest last). Returns two (K, P, A) arrays (P = 0 where nothing overlaps):
    - switch: between the newest running chunk and the sample at the same times (weights
      TRANSITION_WEIGHTS): a switch bridges from the plan into the new chunk (receding horizon);
    - ensemble: the mean of every running chunk and the sample at each time where two or more
      run: a temporal ensemble (the follower's weights exp(-decay i) are nearly uniform at its
      default decay 0.01).
    Chunks that each clear an obstacle, on different sides, can meet inside it: the free space
    around an obstacle is not convex."""
    K, T, A = samples.shape
    switch = np.zeros((K, 0, A))
    total, count = np.zeros((T, A)), np.zeros(T)
    for n, (prev_stamp, prev_actions) in enumerate(running):
        i, ref = reference_at(T, stamp, prev_stamp, prev_actions, dt_s, first_action_index)
        total[i] += ref
        count[i] += 1
        if n == len(running) - 1 and len(i):
            new = samples[:, i, :]                                     # (K, M, A)
            switch = np.concatenate([(1 - w) * ref[None] + w * new for w in TRANSITION_WEIGHTS],
                                    axis=1)
    i = np.flatnonzero(count > 1)       # with one running chunk the mean is the 0.5 blend above
    ensemble = (total[i][None] + samples[:, i, :]) / (count[i] + 1)[None, :, None]
    return switch, ensemble


class DiffusionPolicy:
    """Load once, ``warmup()``, then ``predict()`` per control cycle (any number of robots per call)."""

    def __init__(self, ckpt: Checkpoint, backend: str = 'auto', device: str = 'cpu',
                 num_inference_steps: int | None = None, num_samples: int = 1, seed: int = 0,
                 num_threads: int | None = None):
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
        if num_samples < 1:
            raise ValueError(f'num_samples must be >= 1, got {num_samples}')
        self.device = torch.device(device)
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
        if backend == 'onnxruntime' and self.device.type != 'cpu':
            raise ValueError('the onnxruntime backend runs on the CPU only; use device="cpu"')
        if backend == 'cuda-graph' and self.device.type != 'cuda':
            raise ValueError('the cuda-graph backend needs device="cuda" (or "cuda:N")')
        self.ckpt = ckpt
        self.backend_kind = backend
        self.num_samples = int(num_samples)
        self.num_threads = num_threads
        if num_threads:
            torch.set_num_threads(int(num_threads))
        cfg = ckpt.model_cfg
        self.meta = PolicyMeta(joint_names=list(ckpt.joint_names), camera_names=list(ckpt.camera_names),
                               image_hw=ckpt.image_hw, n_obs_steps=cfg.n_obs_steps, horizon=cfg.horizon,
                               n_action_steps=cfg.n_action_steps, dt_s=ckpt.dt_s, state_dim=ckpt.state_dim,
                               action_dim=ckpt.action_dim, fingerprint=ckpt.fingerprint,
                               train_steps=ckpt.train_steps, action_space=ckpt.action_space,
                               robot_mask=ckpt.robot_mask)
        self.first_action_index = cfg.n_obs_steps - 1
        self.num_inference_steps = int(num_inference_steps or ckpt.sched_cfg.num_inference_steps)
        self.scheduler = ckpt.sched_cfg.kind
        if self.scheduler == 'consistency' and \
                self.num_inference_steps != ckpt.sched_cfg.num_inference_steps:
            # dp_train distill trains a student at its own sampling timesteps only
            warnings.warn(f'{ckpt.path or "checkpoint"}: a consistency student distilled for '
                          f'{ckpt.sched_cfg.num_inference_steps} step(s) sampled with '
                          f'{self.num_inference_steps}: timesteps it was not trained at',
                          stacklevel=2)
        self.model = ckpt.build_model(ema=True)
        self.sampler = Sampler(self.model, ckpt.sched_cfg, self.num_inference_steps).eval()
        self._backends: dict[str, object] = {}
        self._choice: dict[int, str] = {}           # batch size -> backend name (measured at warm-up)
        self.warmup_timings: dict[int, dict[str, float]] = {}
        self._gen = torch.Generator().manual_seed(seed)
        self._prev: dict[str, tuple[float, np.ndarray]] = {}
        self._running: dict[str, list] = {}     # robot -> chunks published that may still run
        self.guidance = None      # guidance.guide.Guidance: guided sampling (set_guidance)
        # How the follower executes the chunks (its execution_mode; '' = unknown): with guidance,
        # the gate checks the mean of the running chunks only where they are averaged
        # (temporal_ensemble, or unknown).
        self.execution = ''

    @classmethod
    def from_checkpoint(cls, path: str, backend: str = 'auto', device: str = 'cpu',
                        num_inference_steps: int | None = None, num_samples: int = 1, **kwargs) -> 'DiffusionPolicy':
        return cls(load_checkpoint(path), backend=backend, device=device,
                   num_inference_steps=num_inference_steps, num_samples=num_samples, **kwargs)

    def set_guidance(self, cfg, constraints, joint_dims=None) -> None:
        """Guided sampling from now on (guidance.GuidanceConfig, guidance.ChunkConstraints in the
        joints of `joint_dims`, default every action dimension), None to stop. With only the
        final step guided (Guidance.final_step_only) the usual backend samples and the final x0
        is guided after it; with more steps the loop runs in Python (the gradient does not fit
        the exported ONNX or the captured CUDA graph): ONNX Runtime one step at a time on the CPU
        (OnnxStepBackend), else eager torch. Regression checkpoints (no loop) are guided the
        final-step way too."""
        from dp_policy.guidance.guide import Guidance
        if cfg is not None and self.meta.action_space is not None:
            raise ValueError(f'{self.ckpt.path or "checkpoint"}: guidance works on joint-space '
                             f'actions; this checkpoint acts in {self.meta.space_kind} space')
        self.guidance = None if cfg is None else Guidance(
            cfg, constraints, self.ckpt.action_normalizer.center, self.ckpt.action_normalizer.scale,
            self.num_inference_steps, joint_dims)
        if self.sampler.loop is not None:
            self.sampler.loop.guide = None     # set per guided call only (traces stay unguided)

    def set_obstacles(self, obstacles) -> None:
        """Guidance's obstacle set from now on (guidance.costs.Obstacle list; a no-op without
        guidance). Call it between predictions (policy_node's inference thread does), so that
        the guidance and the safety gate of one chunk see the same set."""
        if self.guidance is not None:
            self.guidance.c = dataclasses.replace(self.guidance.c, obstacles=list(obstacles))

    # ------------------------------------------------------------------ backends
    def _example(self, batch: int) -> tuple:
        m = self.meta
        state = torch.zeros(batch, m.n_obs_steps, m.state_dim)
        noise = torch.randn(batch, self.num_samples, m.horizon, m.action_dim, generator=self._gen)
        images = [torch.zeros(batch, m.n_obs_steps, *m.image_hw, 3, dtype=torch.uint8) for _ in m.camera_names]
        return state, noise, images

    def _candidates(self) -> list[str]:
        if self.backend_kind in ('onnxruntime', 'cuda-graph'):
            return [self.backend_kind]
        names = ['torch', 'torch-jit']
        if self.backend_kind == 'auto' and self.device.type == 'cuda':
            names.append('cuda-graph')
        if self.backend_kind == 'auto' and self.device.type == 'cpu':
            names.append('onnxruntime')
        return names

    def _steps_backend_ok(self) -> bool:
        if self.device.type != 'cpu' or self.backend_kind not in ('auto', 'onnxruntime'):
            return False
        import importlib.util
        return importlib.util.find_spec('onnxruntime') is not None

    def _get_backend(self, name: str):
        if name not in self._backends:
            if name == 'onnxruntime-steps':
                state, noise, images = self._example(1)
                self._backends[name] = OnnxStepBackend(self.sampler, (state, noise, *images),
                                                       self.num_threads)
            elif name == 'torch':
                self._backends[name] = TorchBackend(self.sampler, self.device)
            elif name == 'torch-jit':
                self._backends[name] = TorchJitBackend(self.sampler, self.device)
            elif name == 'cuda-graph':
                from dp_policy.sampling.cuda_graph import CudaGraphBackend

                self._backends[name] = CudaGraphBackend(self.sampler, self.device)
            elif name == 'onnxruntime':
                state, noise, images = self._example(1)
                self._backends[name] = OnnxBackend(self.sampler, (state, noise, *images), self.num_threads)
            else:
                raise ValueError(name)
        return self._backends[name]

    def warmup(self, batch_sizes=(1,), repeats: int = 3) -> dict[int, str]:
        """Build the backends and, per batch size, keep the fastest (measured). Returns {B: backend}."""
        for b in batch_sizes:
            state, noise, images = self._example(int(b))
            timings = {}
            for name in self._candidates():
                try:
                    timings[name] = time_backend(self._get_backend(name), (state, noise, images), repeats)
                except Exception as exc:  # a backend that cannot run this graph is skipped, not fatal
                    if len(self._candidates()) == 1:
                        raise
                    timings[name] = float('inf')
                    self._backends.pop(name, None)
                    self.warmup_errors = getattr(self, 'warmup_errors', {})
                    self.warmup_errors[name] = repr(exc)
            self.warmup_timings[int(b)] = timings
            self._choice[int(b)] = min(timings, key=timings.get)
        return dict(self._choice)

    def backend_for(self, batch: int) -> str:
        if batch in self._choice:
            return self._choice[batch]
        return self.backend_kind if self.backend_kind in ('onnxruntime', 'cuda-graph') else 'torch'

    # ------------------------------------------------------------------ inference
    def _inputs(self, state, images, noise) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        m = self.meta
        state = np.asarray(state, dtype=np.float32)
        if state.ndim != 3 or state.shape[1:] != (m.n_obs_steps, m.state_dim):
            raise ValueError(f'state must be (B, {m.n_obs_steps}, {m.state_dim}), got {state.shape}')
        if not np.all(np.isfinite(state)):
            raise ValueError('state contains non-finite values')
        B = state.shape[0]
        state_t = torch.from_numpy(np.ascontiguousarray(self.ckpt.state_normalizer.normalize(state), dtype=np.float32))
        imgs = []
        for cam in m.camera_names:
            if images is None or cam not in images:
                raise ValueError(f'missing images for camera {cam!r} (policy cameras: {m.camera_names})')
            arr = images[cam]
            arr = arr if isinstance(arr, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(arr))
            if arr.dtype != torch.uint8 or arr.dim() != 5 or tuple(arr.shape[:2]) != (B, m.n_obs_steps) \
                    or arr.shape[-1] != 3:
                raise ValueError(f'camera {cam!r}: images must be (B={B}, {m.n_obs_steps}, H, W, 3) uint8 RGB, '
                                 f'got {tuple(arr.shape)} {arr.dtype}')
            if tuple(arr.shape[2:4]) != tuple(m.image_hw):
                arr = resize_uint8(arr.flatten(0, 1), m.image_hw).unflatten(0, (B, m.n_obs_steps))
            imgs.append(arr)
        shape = (B, self.num_samples, m.horizon, m.action_dim)
        if noise is None:
            noise_t = torch.randn(shape, generator=self._gen)
        else:
            noise_t = torch.as_tensor(noise, dtype=torch.float32)
            if tuple(noise_t.shape) != shape:
                raise ValueError(f'noise must be {shape} (B, num_samples, horizon, action_dim), got '
                                 f'{tuple(noise_t.shape)}')
        return state_t, noise_t, imgs

    def rtc_inpaint(self, robot_id: str, stamp: float, delay_s: float):
        """Real-time chunking for a chunk of `robot_id` stamped `stamp` that reaches the robot
        `delay_s` later: (target (T, A) the chunk in execution at the new chunk's times, soft mask
        (T,), frozen (T,) bool), or None without a chunk in execution that overlaps. Frozen: the
        actions from the stamp to stamp + delay_s (they run from the current chunk before the
        new one arrives) and those before the stamp; the soft mask decays over the rest of the
        overlap (sampling/rtc.py)."""
        from dp_policy.sampling.rtc import soft_mask

        prev = self._prev.get(str(robot_id))
        if prev is None or stamp < prev[0] - 1e-9:
            return None
        T, f, dt = self.meta.horizon, self.first_action_index, self.meta.dt_s
        i, ref = reference_at(T, stamp, prev[0], prev[1], dt, f, start=0)
        if not len(i) or i[-1] < f:
            return None
        target = np.zeros((T, ref.shape[1]))
        target[i] = ref
        target[:i[0]] = ref[0]          # before the chunk in execution began: its first action
        overlap_end = int(i[-1]) + 1
        # at most the checkpoint's executed steps: a longer delay would leave nothing to decide
        frozen_end = min(overlap_end, f + self.meta.n_action_steps,
                         f + int(math.ceil(max(delay_s, 0.0) / dt - 1e-9)))
        weights = soft_mask(T, frozen_end, overlap_end)
        return target, weights, np.arange(T) < frozen_end

    def predict(self, state, images=None, stamps=None, robot_ids=None, noise=None,
                rtc_delay_s=None, commit: bool = True) -> PolicyOutput:
        """rtc_delay_s: (B,) per robot the expected delay (s) from its observation stamp until
        the chunk reaches it, for real-time chunking (rtc_inpaint; needs stamps); None: off.
        commit: each robot's chunk (not gated) becomes its chunk in execution (commit()) at
        once; False: the caller commits what it really sends (policy_node does, at publication:
        a chunk dropped after the prediction must not be what the next one continues)."""
        t0 = time.perf_counter()
        state_t, noise_t, imgs = self._inputs(state, images, noise)
        B = state_t.shape[0]
        robot_ids = [''] * B if robot_ids is None else [str(r) for r in robot_ids]
        if len(robot_ids) != B:
            raise ValueError(f'{len(robot_ids)} robot_ids for a batch of {B}')
        stamps_arr = None if stamps is None else np.asarray(stamps, dtype=np.float64).reshape(-1)
        if stamps_arr is not None and len(stamps_arr) != B:
            raise ValueError(f'{len(stamps_arr)} stamps for a batch of {B}')
        name = self.backend_for(B)
        inpaint = [None] * B
        if rtc_delay_s is not None and stamps_arr is not None and self.sampler.loop is not None:
            inpaint = [self.rtc_inpaint(rid, stamps_arr[b], float(rtc_delay_s[b]))
                       for b, rid in enumerate(robot_ids)]
        if any(p is not None for p in inpaint):
            samples_n = self._sample_rtc(state_t, noise_t, imgs, inpaint)
            name = 'torch+rtc'
            if self.guidance is not None:      # the last steps inside the loop, or the final x0
                if self.guidance.final_step_only:
                    samples_n = self.guidance.finish(samples_n)
                name += '+guidance'
        elif self.guidance is not None and self.guidance.final_step_only:
            # the fastest backend samples the loop, the final x0 is guided after it (any backend,
            # the CUDA graph too)
            samples_n = self.guidance.finish(self._get_backend(name).run(state_t, noise_t, imgs))
            name += '+guidance'
        elif self.guidance is not None and self.sampler.loop is not None:
            guided = 'onnxruntime-steps' if self._steps_backend_ok() else 'torch'
            name = guided + '+guidance'
            self.sampler.loop.guide = self.guidance
            try:
                samples_n = self._get_backend(guided).run(state_t, noise_t, imgs)       # (B, K, T, A)
            finally:
                self.sampler.loop.guide = None
        else:
            samples_n = self._get_backend(name).run(state_t, noise_t, imgs)              # (B, K, T, A)
        samples = self.ckpt.action_normalizer.unnormalize(samples_n.numpy().astype(np.float64))
        for b, p in enumerate(inpaint):          # the frozen actions exactly, not via float32
            if p is not None:
                samples[b][:, p[2]] = p[0][p[2]]
        coherence = np.zeros((B, self.num_samples))          # to each robot's chunk in execution
        continues = np.zeros(B, dtype=bool)                  # ... where there is one
        transitions: list = [None] * B                       # guidance: points of the switch to it
        for b, rid in enumerate(robot_ids):
            prev = None if stamps_arr is None else self._prev.get(rid)
            if prev is not None and stamps_arr[b] < prev[0] - 1e-9:
                prev = None                                  # clock went backwards: forget
                self._running.pop(rid, None)
            if prev is None:
                continue
            if self.num_samples > 1:
                coherence[b], overlap = coherence_distances(
                    samples[b], stamps_arr[b], prev[0], prev[1], self.meta.dt_s,
                    self.first_action_index)
                continues[b] = overlap > 0
            if self.guidance is not None:
                switch, ensemble = transition_points(samples[b], stamps_arr[b],
                                                     self._running.get(rid, []), self.meta.dt_s,
                                                     self.first_action_index)
                if self.execution not in ('', 'temporal_ensemble'):
                    ensemble = ensemble[:, :0]            # the follower never averages chunks
                transitions[b] = (switch, ensemble)
        gated = assessment = None
        if self.guidance is not None:
            assessment = self.guidance.assess(samples, self.first_action_index, transitions)
            chosen, gated = select(assessment, coherence, continues)
        else:
            chosen = np.argmin(coherence, axis=1).astype(np.int64)
        actions = samples[np.arange(B), chosen]                                          # (B, T, A)
        if commit and stamps_arr is not None:
            for b, rid in enumerate(robot_ids):
                if not (gated is not None and gated[b]):
                    self.commit(rid, stamps_arr[b], actions[b])
        frozen = np.array([0 if p is None else int(p[2].sum()) for p in inpaint], dtype=np.int64)
        return PolicyOutput(actions=actions, samples=samples, chosen=chosen, frozen=frozen,
                            first_action_index=self.first_action_index, latency_s=time.perf_counter() - t0,
                            backend=name, num_inference_steps=self.num_inference_steps, scheduler=self.scheduler,
                            stamps=stamps_arr, robot_ids=robot_ids, gated=gated, assessment=assessment)

    def commit(self, robot_id: str, stamp: float, actions: np.ndarray) -> bool:
        """`actions` (T, A), stamped `stamp`, is what robot_id executes from now on: the
        reference of the next chunk's coherence, transition gate and real-time chunking. A chunk
        with a non-finite action is refused (False): it never runs, nothing continues it."""
        actions = np.asarray(actions, dtype=np.float64)
        if not np.all(np.isfinite(actions)) or not math.isfinite(float(stamp)):
            return False
        rid, stamp = str(robot_id), float(stamp)
        self._prev[rid] = (stamp, actions.copy())
        # the chunks that reach past this one's stamp still run (a temporal ensemble)
        horizon_s = (actions.shape[0] - 1 - self.first_action_index) * self.meta.dt_s
        self._running[rid] = [c for c in self._running.get(rid, []) if c[0] + horizon_s > stamp] \
            + [self._prev[rid]]
        return True

    def _sample_rtc(self, state_t, noise_t, imgs, inpaint) -> torch.Tensor:
        """The sampling graph in eager torch with RTC guidance (sampling/rtc.py) for the robots
        with an inpainting request (the others: weights 0, sampled as usual). (B, K, T, A)."""
        from dp_policy.sampling.rtc import rtc_sample

        B, K, T, A = noise_t.shape
        norm = self.ckpt.action_normalizer
        target = np.zeros((B, T, A), dtype=np.float32)
        weights = np.zeros((B, T), dtype=np.float32)
        frozen = np.zeros((B, T), dtype=bool)
        for b, p in enumerate(inpaint):
            if p is not None:
                target[b] = norm.normalize(p[0])
                weights[b], frozen[b] = p[1], p[2]

        def per_sample(a):
            t = torch.from_numpy(a)
            return t.unsqueeze(1).expand(B, K, *t.shape[1:]).flatten(0, 1)
        dev = self.device
        sampler = self.sampler.to(dev)
        with torch.inference_mode():
            cond = sampler.encoder(state_t.to(dev), dict(zip(sampler.camera_names,
                                                               [i.to(dev) for i in imgs])))
            cond = cond.unsqueeze(1).expand(-1, K, -1).flatten(0, 1)               # (B*K, G)
            ctx = sampler.loop.denoiser.condition(cond)
        guide = self.guidance if (self.guidance is not None
                                  and not self.guidance.final_step_only) else None
        x = rtc_sample(sampler.loop, ctx.clone(), noise_t.flatten(0, 1).to(dev),
                       per_sample(target).to(dev), per_sample(weights).to(dev),
                       per_sample(frozen).to(dev),
                       generator=self._gen if dev.type == 'cpu' else None, guide=guide)
        return x.detach().float().cpu().view(B, K, T, A)

    def reset(self, robot_id: str | None = None) -> None:
        """Forget the stored previous chunk of one robot (or of all robots when None)."""
        if robot_id is None:
            self._prev.clear()
            self._running.clear()
        else:
            self._prev.pop(str(robot_id), None)
            self._running.pop(str(robot_id), None)
