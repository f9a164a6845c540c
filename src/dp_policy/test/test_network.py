"""ConditionalUnet1D and encoders: shapes, conditioning actually matters, parameter counts."""
import pytest
import torch

from dp_policy.config import ModelConfig, cpu_default, paper
from dp_policy.model.unet import ConditionalUnet1D, count_parameters


@pytest.mark.parametrize('down_dims,horizon', [((16, 32), 16), ((16, 32, 64), 16), ((16,), 10)])
def test_unet_output_shape(down_dims, horizon):
    cfg = ModelConfig(down_dims=down_dims, horizon=horizon, n_groups=4, step_embed_dim=16, n_action_steps=4)
    net = ConditionalUnet1D(action_dim=5, global_cond_dim=12, cfg=cfg)
    x = torch.randn(3, horizon, 5)
    out = net(x, torch.tensor([0, 50, 99]), torch.randn(3, 12))
    assert out.shape == (3, horizon, 5)


@pytest.mark.parametrize('scale', [True, False])
def test_output_depends_on_condition_and_step(scale):
    torch.manual_seed(0)
    cfg = ModelConfig(down_dims=(16, 32), n_groups=4, step_embed_dim=16, cond_predict_scale=scale)
    net = ConditionalUnet1D(2, 6, cfg).eval()
    x = torch.randn(1, 16, 2)
    c = torch.randn(1, 6)
    base = net(x, torch.tensor([10]), c)
    assert not torch.allclose(base, net(x, torch.tensor([10]), c + 1.0))
    assert not torch.allclose(base, net(x, torch.tensor([90]), c))
    assert torch.allclose(base, net(x, torch.tensor([10.0]), c))      # int and float steps agree


def test_parameter_counts_match_the_reference_sizes():
    # diffusion_policy ConditionalUnet1D, step embedding 256: 64/128/256 ~5.4 M, 256/512/1024 ~65.8 M
    small = ConditionalUnet1D(2, 2 * 5, cpu_default().model)
    assert 5.0e6 < count_parameters(small) < 5.8e6
    big = ConditionalUnet1D(2, 2 * 5, paper().model)
    assert 64e6 < count_parameters(big) < 67e6
