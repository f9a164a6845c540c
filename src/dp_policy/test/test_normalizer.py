"""Min-max normaliser: [-1, 1] range, exact round trip, constant joints, numpy and torch alike."""
import numpy as np
import pytest
import torch

from dp_policy.data.normalizer import MinMaxNormalizer


def test_fit_maps_data_to_unit_range_and_round_trips():
    rng = np.random.default_rng(0)
    data = rng.uniform([-3, 0, 1], [3, 0.5, 2], size=(500, 3)).astype(np.float32)
    n = MinMaxNormalizer.fit(data)
    x = n.normalize(data)
    assert x.dtype == np.float32
    assert np.allclose(x.min(0), -1, atol=1e-6) and np.allclose(x.max(0), 1, atol=1e-6)
    assert np.allclose(n.unnormalize(x), data, atol=1e-5)
    t = torch.from_numpy(data)
    assert torch.allclose(n.unnormalize(n.normalize(t)), t, atol=1e-5)
    assert np.allclose(n.normalize(t).numpy(), x, atol=1e-6)


def test_constant_joint_maps_to_zero_without_nan():
    data = np.stack([np.linspace(-1, 1, 50), np.full(50, 0.7)], axis=1)
    n = MinMaxNormalizer.fit(data)
    x = n.normalize(data)
    assert np.all(np.isfinite(x))
    assert np.allclose(x[:, 1], 0.0)
    assert np.allclose(n.unnormalize(x), data)
    assert n.degenerate.tolist() == [False, True]
    # whatever the network outputs there, the constant comes back (numpy and torch)
    noisy = np.array([[0.3, 0.04], [-0.2, -0.9]])
    assert np.allclose(n.unnormalize(noisy)[:, 1], 0.7)
    assert np.allclose(n.unnormalize(noisy)[:, 0], n.unnormalize(noisy[:, :1].repeat(2, 1))[:, 0])
    assert torch.allclose(n.unnormalize(torch.tensor(noisy))[:, 1], torch.tensor(0.7, dtype=torch.float64))


def test_stats_are_plain_lists_and_reload():
    n = MinMaxNormalizer([0.0, -1.0], [1.0, 1.0])
    d = n.state_dict()
    assert d == {'min': [0.0, -1.0], 'max': [1.0, 1.0]}
    m = MinMaxNormalizer.from_state_dict(d)
    assert np.allclose(m.normalize(np.array([0.5, 0.0])), [0.0, 0.0])


def test_bad_stats_and_shapes_are_rejected():
    with pytest.raises(ValueError, match='max < min'):
        MinMaxNormalizer([1.0], [0.0])
    with pytest.raises(ValueError, match='finite'):
        MinMaxNormalizer([np.nan], [1.0])
    with pytest.raises(ValueError, match='last dimension'):
        MinMaxNormalizer([0, 0], [1, 1]).normalize(np.zeros((3, 3)))
