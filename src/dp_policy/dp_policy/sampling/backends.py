"""Inference backends for the whole sampling graph (ROS-free).

The graph (``Sampler``): normalised state + uint8 images + initial noise -> K denoised samples per
robot. Observation features are computed once per robot and repeated K times; the B*K chunks are
denoised together, one U-Net forward per denoising step, the whole K-step loop in one graph.

Backends, all running the same ``Sampler`` built from one checkpoint:
* ``TorchBackend``      'torch'       eager PyTorch (CPU or CUDA).
* ``TorchJitBackend``   'torch-jit'   torch.jit.trace + freeze, one trace per input shape.
* ``OnnxBackend``       'onnxruntime' the Sampler exported to ONNX (dynamic batch and sample count),
                                      run by ONNX Runtime on the CPU.
``DiffusionPolicy`` (policy.py) picks between them per batch size by measurement at warm-up.
"""
from __future__ import annotations

import io
import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from dp_policy.config import SchedulerConfig
from dp_policy.model.fast_unet import StepConditionedUnet
from dp_policy.model.models import DiffusionModel, RegressionModel
from dp_policy.sampling.schedulers import DenoisingLoop


class Sampler(nn.Module):
    """(state (B, To, S), noise (B, K, T, A), *images (B, To, H, W, 3) uint8) -> samples (B, K, T, A).

    For a ``RegressionModel`` (the MSE baseline) the chunk is predicted directly: the noise only
    gives the output shape and the K samples are identical.

    The U-Net runs in its inference form (fast_unet.StepConditionedUnet: FiLM conditioning computed
    once per chunk, convolutions as GEMMs, channels-last), built from the model's weights at
    construction: the same function, 2-3x faster on the CPU at small batches.
    """

    def __init__(self, model: DiffusionModel | RegressionModel, sched_cfg: SchedulerConfig,
                 num_inference_steps: int | None = None):
        super().__init__()
        self.encoder = model.obs_encoder
        self.regression = isinstance(model, RegressionModel)
        if self.regression:
            self.head = model
            self.loop = None
        else:
            self.loop = DenoisingLoop(model.unet, sched_cfg, num_inference_steps)
            # the inference form, specialised to the loop's own timesteps
            self.loop.denoiser = StepConditionedUnet(model.unet, self.loop.timesteps)
        self.camera_names = list(model.camera_names)

    def forward(self, state: torch.Tensor, noise: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
        cond = self.encoder(state, dict(zip(self.camera_names, images)))     # (B, G)
        if self.regression:
            chunk = self.head.predict_chunk(cond)                            # (B, T, A)
            return chunk.unsqueeze(1).expand_as(noise) + 0.0 * noise         # (B, K, T, A)
        k = noise.shape[1]
        cond = cond.unsqueeze(1).expand(-1, k, -1).flatten(0, 1)             # (B*K, G)
        x = self.loop(noise.flatten(0, 1), cond)                             # (B*K, T, A)
        return x.view(noise.shape)                                           # (B, K, T, A)


class TorchBackend:
    name = 'torch'

    def __init__(self, sampler: Sampler, device: str | torch.device = 'cpu'):
        self.device = torch.device(device)
        self.sampler = sampler.to(self.device).eval()

    def run(self, state: torch.Tensor, noise: torch.Tensor, images: list[torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self.sampler(state.to(self.device), noise.to(self.device),
                                *[i.to(self.device) for i in images]).float().cpu()


class TorchJitBackend(TorchBackend):
    """torch.jit.trace + freeze of the whole sampler, one trace per input shape (traced on first use)."""

    name = 'torch-jit'

    def __init__(self, sampler: Sampler, device: str | torch.device = 'cpu'):
        super().__init__(sampler, device)
        self._traces: dict[tuple, torch.jit.ScriptModule] = {}

    def _trace(self, args: tuple) -> torch.jit.ScriptModule:
        key = tuple(tuple(a.shape) for a in args)
        if key not in self._traces:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter('ignore')
                traced = torch.jit.trace(self.sampler, args, check_trace=False)
                self._traces[key] = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        return self._traces[key]

    def run(self, state: torch.Tensor, noise: torch.Tensor, images: list[torch.Tensor]) -> torch.Tensor:
        args = (state.to(self.device), noise.to(self.device), *[i.to(self.device) for i in images])
        fn = self._trace(args)
        with torch.no_grad():
            return fn(*args).float().cpu()


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, torch.get_num_threads()))


def ort_session(model: bytes, num_threads: int | None = None):
    """An ONNX Runtime CPU session of an exported graph: sequential, all graph optimisations,
    `num_threads` intra-op threads (default: default_threads())."""
    import onnxruntime as ort  # imported here: only the ONNX backends need it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=['CPUExecutionProvider'])


class OnnxBackend:
    """The Sampler exported once to ONNX (in memory) and run by ONNX Runtime (CPU)."""

    name = 'onnxruntime'

    def __init__(self, sampler: Sampler, example: tuple[torch.Tensor, ...], num_threads: int | None = None,
                 path: str | None = None):

        sampler = sampler.cpu().eval()
        n_img = len(example) - 2
        names = ['state', 'noise'] + [f'image{i}' for i in range(n_img)]
        dyn = {'state': {0: 'B'}, 'noise': {0: 'B', 1: 'K'}, 'samples': {0: 'B', 1: 'K'}}
        dyn.update({f'image{i}': {0: 'B'} for i in range(n_img)})
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(sampler, tuple(a.cpu() for a in example), buf, input_names=names,
                              output_names=['samples'], dynamic_axes=dyn, opset_version=17, dynamo=False,
                              do_constant_folding=True)
        self.model_bytes = buf.getvalue()
        if path:
            with open(path, 'wb') as f:
                f.write(self.model_bytes)
        self.session = ort_session(self.model_bytes, num_threads)
        self.names = names

    def run(self, state: torch.Tensor, noise: torch.Tensor, images: list[torch.Tensor]) -> torch.Tensor:
        feeds = {'state': state.cpu().numpy().astype(np.float32, copy=False),
                 'noise': noise.cpu().numpy().astype(np.float32, copy=False)}
        for i, img in enumerate(images):
            feeds[f'image{i}'] = img.cpu().numpy()
        return torch.from_numpy(self.session.run(['samples'], feeds)[0])


class _Encoder(nn.Module):
    def __init__(self, sampler: Sampler):
        super().__init__()
        self.encoder, self.cameras = sampler.encoder, sampler.camera_names

    def forward(self, state: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
        return self.encoder(state, dict(zip(self.cameras, images)))                # (B, G)


class _Step(nn.Module):
    def __init__(self, denoiser: StepConditionedUnet):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        return self.denoiser.denoise(x, film)                                     # (N, T, A)


class OnnxStepBackend:
    """Guided sampling on ONNX Runtime: the observation encoder and ONE denoising step exported
    (two sessions); the loop runs in Python, so that the sampler's guide (guidance.guide) sees
    every predicted clean chunk. Same numbers as the whole-graph backends without a guide."""

    name = 'onnxruntime-steps'

    def __init__(self, sampler: Sampler, example: tuple[torch.Tensor, ...],
                 num_threads: int | None = None):
        if sampler.loop is None:
            raise ValueError('a regression model has no denoising loop to guide')
        self.sampler = sampler.cpu().eval()
        state, noise, *images = example
        n_img = len(images)
        loop = self.sampler.loop
        with torch.no_grad():
            cond = _Encoder(self.sampler)(state, *images)
            film = loop.denoiser.condition(cond)[0]
            x = noise.flatten(0, 1)[: cond.shape[0]]
        enc = self._export(_Encoder(self.sampler), (state, *images),
                           ['state'] + [f'image{i}' for i in range(n_img)], 'cond',
                           {'state': {0: 'B'}, 'cond': {0: 'B'},
                            **{f'image{i}': {0: 'B'} for i in range(n_img)}})
        step = self._export(_Step(loop.denoiser), (x, film), ['x', 'film'], 'out',
                            {'x': {0: 'N'}, 'film': {0: 'N'}, 'out': {0: 'N'}})
        self.encoder = ort_session(enc, num_threads)
        self.step = ort_session(step, num_threads)
        self.n_img = n_img

    @staticmethod
    def _export(module: nn.Module, args: tuple, names: list, output: str, dyn: dict) -> bytes:
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(module, args, buf, input_names=names, output_names=[output],
                              dynamic_axes=dyn, opset_version=17, dynamo=False,
                              do_constant_folding=True)
        return buf.getvalue()

    def run(self, state: torch.Tensor, noise: torch.Tensor, images: list[torch.Tensor]) -> torch.Tensor:
        feeds = {'state': state.cpu().numpy().astype(np.float32, copy=False)}
        for i, img in enumerate(images):
            feeds[f'image{i}'] = img.cpu().numpy()
        cond = torch.from_numpy(self.encoder.run(['cond'], feeds)[0])                 # (B, G)
        loop = self.sampler.loop
        k_samples = noise.shape[1]
        with torch.inference_mode():
            cond = cond.unsqueeze(1).expand(-1, k_samples, -1).flatten(0, 1)         # (B*K, G)
            ctx = loop.denoiser.condition(cond).contiguous().numpy()                 # (S, N, 1, E)
            x = noise.flatten(0, 1).float()                                          # (N, T, A)
            for k in range(loop.num_steps):
                out = self.step.run(['out'], {'x': x.numpy(), 'film': ctx[k]})[0]
                z = torch.randn_like(x) if loop.stochastic else None
                x = loop.step(k, x, torch.from_numpy(out), z)
        return x.view(noise.shape).float()


def time_backend(backend, args: tuple, repeats: int = 5, min_time_s: float = 0.0) -> float:
    """Median wall time of backend.run(*args) after one untimed call."""
    backend.run(*args)
    times = []
    t_end = time.perf_counter() + min_time_s
    while len(times) < repeats or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        backend.run(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
