"""Our pure-torch DDPM/DDIM equal diffusers' schedulers on the same inputs (within 1e-5)."""
import pytest
import torch

from dp_policy.config import SchedulerConfig
from dp_policy.sampling.schedulers import DenoisingLoop, NoiseScheduler, alphas_cumprod, inference_timesteps

diffusers = pytest.importorskip('diffusers')


class FakeDenoiser(torch.nn.Module):
    """A deterministic, nonlinear 'network' so that every step's output differs."""

    def forward(self, x, t, cond):
        return torch.tanh(x * 0.7 + cond[:, None, :x.shape[-1]]) * (1.0 + t[:, None, None] / 200.0)


def diffusers_kwargs(cfg):
    return dict(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                beta_start=cfg.beta_start, beta_end=cfg.beta_end, clip_sample=cfg.clip_sample,
                prediction_type=cfg.prediction_type, clip_sample_range=cfg.clip_sample_range)


@pytest.mark.parametrize('beta_schedule', ['squaredcos_cap_v2', 'linear'])
def test_alphas_and_add_noise_match_diffusers(beta_schedule):
    cfg = SchedulerConfig(beta_schedule=beta_schedule)
    ref = diffusers.DDPMScheduler(**diffusers_kwargs(cfg))
    assert torch.allclose(alphas_cumprod(cfg), ref.alphas_cumprod, atol=1e-7)
    x0, noise = torch.randn(8, 16, 3), torch.randn(8, 16, 3)
    t = torch.randint(0, 100, (8,))
    ours = NoiseScheduler(cfg).add_noise(x0, noise, t)
    assert torch.allclose(ours, ref.add_noise(x0, noise, t), atol=1e-5)


@pytest.mark.parametrize('steps', [10, 1, 7, 100])
@pytest.mark.parametrize('prediction_type', ['epsilon', 'sample'])
@pytest.mark.parametrize('clip', [True, False])
def test_ddim_loop_matches_diffusers(steps, prediction_type, clip):
    cfg = SchedulerConfig(kind='ddim', num_inference_steps=steps, prediction_type=prediction_type,
                          clip_sample=clip)
    net = FakeDenoiser()
    torch.manual_seed(0)
    x, cond = torch.randn(4, 16, 3), torch.randn(4, 5)
    ref = diffusers.DDIMScheduler(**diffusers_kwargs(cfg), set_alpha_to_one=True, steps_offset=0)
    ref.set_timesteps(steps)
    assert ref.timesteps.tolist() == inference_timesteps(cfg, steps)
    y = x.clone()
    for t in ref.timesteps:
        y = ref.step(net(y, t.expand(4), cond), t, y).prev_sample
    ours = DenoisingLoop(net, cfg)(x.clone(), cond)
    assert (ours - y).abs().max() < 1e-5


@pytest.mark.parametrize('steps', [100, 10])
def test_ddpm_loop_matches_diffusers_with_the_same_step_noise(steps):
    cfg = SchedulerConfig(kind='ddpm', num_inference_steps=steps)
    net = FakeDenoiser()
    torch.manual_seed(1)
    x, cond = torch.randn(2, 16, 3), torch.randn(2, 5)
    ref = diffusers.DDPMScheduler(**diffusers_kwargs(cfg), variance_type='fixed_small')
    ref.set_timesteps(steps)
    gen = torch.Generator().manual_seed(123)
    y = x.clone()
    step_noise = []
    for t in ref.timesteps:
        state = gen.get_state()
        y = ref.step(net(y, t.expand(2), cond), t, y, generator=gen).prev_sample
        after = gen.get_state()
        g2 = torch.Generator()
        g2.set_state(state)
        z = torch.randn(y.shape, generator=g2) if int(t) > 0 else torch.zeros_like(y)
        step_noise.append(z)
        gen.set_state(after)
    ours = DenoisingLoop(net, cfg)(x.clone(), cond, torch.stack(step_noise))
    assert (ours - y).abs().max() < 1e-5


def test_loop_has_no_data_dependent_python():
    """The whole loop traces to one graph whose output follows new inputs (no baked-in values)."""
    cfg = SchedulerConfig()
    net = FakeDenoiser()
    loop = DenoisingLoop(net, cfg).eval()
    x, cond = torch.randn(2, 16, 3), torch.randn(2, 5)
    traced = torch.jit.trace(loop, (x, cond), check_trace=False)
    x2, cond2 = torch.randn(3, 16, 3), torch.randn(3, 5)
    assert torch.allclose(traced(x2, cond2), loop(x2, cond2), atol=1e-6)
