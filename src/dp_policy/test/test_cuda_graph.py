"""CUDA-graph backend (needs a GPU; skipped without one): equal to eager torch on the same noise,
follows new inputs on replay, one graph per batch size, picked by warm-up when faster."""
import numpy as np
import pytest
import torch

from dp_policy.checkpoint import create_untrained_checkpoint, load_checkpoint
from dp_policy.policy import DiffusionPolicy

needs_cuda = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]
JOINTS = ['a', 'b', 'c']


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return load_checkpoint(create_untrained_checkpoint(tmp_path_factory.mktemp('cg') / 'c.ckpt', JOINTS, ['top'],
                                                       (32, 32), preset='tiny', seed=4))


def inputs(b, k, seed):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (b, 2, 3)).astype(np.float32),
            {'top': rng.integers(0, 256, (b, 2, 32, 32, 3), dtype=np.uint8)},
            rng.standard_normal((b, k, 16, 3)).astype(np.float32))


@needs_cuda[0]
@needs_cuda[1]
def test_cuda_graph_equals_eager_and_follows_new_inputs(ckpt):
    eager = DiffusionPolicy(ckpt, backend='torch', device='cuda', num_samples=2)
    graph = DiffusionPolicy(ckpt, backend='cuda-graph', device='cuda', num_samples=2)
    for b in (1, 4, 1):
        for seed in (0, 1):
            state, imgs, noise = inputs(b, 2, seed + 10 * b)
            a = eager.predict(state, imgs, noise=noise).samples
            g = graph.predict(state, imgs, noise=noise)
            assert g.backend == 'cuda-graph'
            assert np.abs(g.samples - a).max() < 1e-4
    assert len(graph._get_backend('cuda-graph')._graphs) == 2         # b=1 and b=4


@needs_cuda[0]
@needs_cuda[1]
def test_warmup_on_cuda_measures_the_graph_backend(ckpt):
    pol = DiffusionPolicy(ckpt, backend='auto', device='cuda')
    choice = pol.warmup(batch_sizes=(1, 8), repeats=3)
    for b in (1, 8):
        assert 'cuda-graph' in pol.warmup_timings[b] and 'onnxruntime' not in pol.warmup_timings[b]
        assert choice[b] == min(pol.warmup_timings[b], key=pol.warmup_timings[b].get)


def test_cuda_graph_backend_refuses_the_cpu(tmp_path):
    path = create_untrained_checkpoint(tmp_path / 'c.ckpt', JOINTS, preset='tiny')
    with pytest.raises(ValueError, match='cuda-graph backend needs device'):
        DiffusionPolicy.from_checkpoint(path, backend='cuda-graph', device='cpu')
    from dp_policy.sampling.backends import Sampler
    from dp_policy.sampling.cuda_graph import CudaGraphBackend
    if not torch.cuda.is_available():
        ck = load_checkpoint(path)
        with pytest.raises(RuntimeError, match='needs a CUDA device'):
            CudaGraphBackend(Sampler(ck.build_model(), ck.sched_cfg), 'cuda')
