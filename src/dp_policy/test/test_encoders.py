"""Image encoders: uint8 in, features out; crops random in training, centre at inference."""
import pytest
import torch

from dp_policy.config import VisionConfig
from dp_policy.model.encoders import ImagePreprocess, ObservationEncoder, ResNet18GN, SmallCNN, SpatialSoftmax


def test_spatial_softmax_finds_the_peak():
    ss = SpatialSoftmax(1, 9, 9, 1)
    with torch.no_grad():
        ss.keypoints.weight.fill_(1.0)
        ss.keypoints.bias.zero_()
    fmap = torch.zeros(1, 1, 9, 9)
    fmap[0, 0, 0, 8] = 100.0                 # top-right corner
    xy = ss(fmap)
    assert torch.allclose(xy, torch.tensor([[1.0, -1.0]]), atol=1e-4)


@pytest.mark.parametrize('cls', [ResNet18GN, SmallCNN])
def test_encoders_shape_and_no_batchnorm(cls):
    cfg = VisionConfig(feature_dim=24, num_keypoints=8)
    enc = cls((76, 84), cfg)
    out = enc(torch.randn(3, 3, 76, 84))
    assert out.shape == (3, 24)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in enc.modules())


def test_preprocess_crops_resizes_and_scales():
    pre = ImagePreprocess((20, 20), (16, 16))
    img = torch.zeros(4, 20, 20, 3, dtype=torch.uint8)
    img[:, 10, 10] = 255
    pre.eval()
    a = pre(img)
    assert a.shape == (4, 3, 16, 16) and a.min() == -1.0 and a.max() == 1.0
    assert torch.equal(a, pre(img))                                  # centre crop: deterministic
    pre.train()
    torch.manual_seed(0)
    crops = torch.stack([pre(img) for _ in range(5)])
    assert not all(torch.equal(crops[0], c) for c in crops[1:])     # random crop in training
    pre.eval()
    big = torch.zeros(2, 40, 30, 3, dtype=torch.uint8)               # any input size: resized first
    assert pre(big).shape == (2, 3, 16, 16)


def test_observation_encoder_concatenates_state_and_cameras():
    cfg = VisionConfig(feature_dim=8, num_keypoints=4, small_cnn_channels=(16, 16, 16, 16))
    enc = ObservationEncoder(3, ['left', 'right'], (32, 32), cfg).eval()
    state = torch.randn(2, 2, 3)
    imgs = {c: torch.randint(0, 255, (2, 2, 32, 32, 3), dtype=torch.uint8) for c in ('left', 'right')}
    out = enc(state, imgs)
    assert out.shape == (2, 2 * (3 + 2 * 8))
    assert ObservationEncoder(3, [], None, cfg)(state).shape == (2, 6)
