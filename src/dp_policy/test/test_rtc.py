"""Real-time chunking in the policy core (ROS-free): the soft mask, the frozen prefix equal to the
chunk in execution, and a new chunk that continues it at the frozen boundary."""
import numpy as np
import pytest
import torch

from dp_policy.checkpoint import create_untrained_checkpoint, load_checkpoint
from dp_policy.config import SchedulerConfig
from dp_policy.policy import DiffusionPolicy
from dp_policy.sampling.rtc import guidance_weight, soft_mask

torch.set_num_threads(1)


def test_soft_mask_is_one_on_the_frozen_actions_then_decays_to_zero_at_the_overlap_end():
    w = soft_mask(16, 4, 12)
    assert np.all(w[:4] == 1.0) and np.all(w[12:] == 0.0)
    assert np.all(np.diff(w[4:13]) < 0) and 0 < w[11] < w[4] < 1
    assert np.all(soft_mask(8, 0, 0) == 0)
    with pytest.raises(ValueError):
        soft_mask(8, 5, 3)


def test_guidance_weight_is_clipped_and_vanishes_with_the_noise():
    f_noisy, tau_noisy = guidance_weight(0.05, 0.9987)
    f_clean, tau_clean = guidance_weight(0.9999, 0.01)
    assert tau_noisy < 0.1 < 0.9 < tau_clean
    assert 0 < f_clean < 0.1 and 0 < f_noisy       # near the data the chunk is already decided


@pytest.fixture(scope='module', params=['ddim', 'consistency'])
def policy(request, tmp_path_factory):
    sched = SchedulerConfig(kind=request.param,
                            num_inference_steps=10 if request.param == 'ddim' else 2)
    path = create_untrained_checkpoint(tmp_path_factory.mktemp('rtc') / 'p.ckpt', ['a', 'b'],
                                       preset='tiny', seed=5, action_min=-1.0, action_max=1.0,
                                       sched_cfg=sched)
    return DiffusionPolicy(load_checkpoint(path), backend='torch', num_samples=2, seed=0)


def test_an_rtc_chunk_equals_the_frozen_prefix_and_continues_it(policy):
    """Chunk 1 at t = 0; chunk 2 at t = 0.3 s (dt 0.1) expected to arrive 0.25 s later: its
    actions up to the arrival (3 after the stamp, and the one at the stamp) are chunk 1's at the
    same times exactly, and (DDIM, deterministic: the same noise gives the same chunk but for the
    guidance) the first free action is closer to chunk 1 than without RTC. The consistency
    student re-noises with fresh noise between its two steps: only the prefix is compared."""
    pol = policy
    f, dt = pol.first_action_index, pol.meta.dt_s
    state = np.zeros((1, 2, 2), np.float32)
    rng = np.random.default_rng(0)
    first = pol.predict(state, stamps=[0.0], noise=rng.standard_normal((1, 2, 16, 2)))
    prev = first.actions[0]
    noise = rng.standard_normal((1, 2, 16, 2))
    plain = pol.predict(state + 0.3, stamps=[0.3], noise=noise)
    pol._prev[''] = (0.0, prev)                          # the same chunk in execution again
    pol._running[''] = [(0.0, prev)]
    rtc = pol.predict(state + 0.3, stamps=[0.3], noise=noise, rtc_delay_s=[0.25])
    assert rtc.backend.startswith('torch+rtc') and rtc.frozen.tolist() == [f + 3]
    shift = int(round(0.3 / dt))      # chunk 2's action i is for chunk 1's time index shift + i
    k = rtc.frozen[0]
    expected = prev[shift + f: shift + k]
    for s in range(2):                                   # every sample, not only the chosen
        np.testing.assert_allclose(rtc.samples[0, s, f:k], expected, rtol=0, atol=1e-12)
    step_rtc = np.abs(rtc.samples[0, :, k] - prev[shift + k]).max()
    step_plain = np.abs(plain.samples[0, :, k] - prev[shift + k]).max()
    if pol.scheduler == 'ddim':
        assert step_rtc < step_plain, (step_rtc, step_plain)
    assert np.all(np.abs(rtc.actions) <= 1.0 + 1e-9)     # still inside the normaliser's range


def test_no_chunk_in_execution_means_plain_sampling(policy):
    pol = policy
    pol.reset()
    out = pol.predict(np.zeros((1, 2, 2), np.float32), stamps=[5.0], rtc_delay_s=[0.2])
    assert out.frozen.tolist() == [0] and '+rtc' not in out.backend


def test_zero_weights_are_the_plain_loop_and_weights_pull_towards_the_target(policy):
    """Without weights the RTC loop is the sampler's own arithmetic (DDIM: the same chunks); with
    the soft mask over the whole chunk and nothing frozen, the guidance alone brings the chunks
    nearer the target where the weights are."""
    pol = policy
    if pol.scheduler != 'ddim':
        pytest.skip('consistency sampling draws its step noise from the policy generator')
    rng = np.random.default_rng(1)
    state_t, noise_t, imgs = pol._inputs(np.zeros((1, 2, 2), np.float32), None,
                                         rng.standard_normal((1, 2, 16, 2)))
    plain = pol._get_backend('torch').run(state_t, noise_t, imgs)
    np.testing.assert_allclose(pol._sample_rtc(state_t, noise_t, imgs, [None]).numpy(),
                               plain.numpy(), atol=1e-5)
    target = np.tile(np.linspace(-0.5, 0.5, 16)[:, None], (1, 2))            # joint units
    weights = soft_mask(16, 6, 12)
    guided = pol._sample_rtc(state_t, noise_t, imgs,
                             [(target, weights, np.zeros(16, dtype=bool))]).numpy()
    goal = pol.ckpt.action_normalizer.normalize(target)

    def err(x):
        return float((weights[None, :, None] * (x[0] - goal[None]) ** 2).sum())
    assert err(guided) < 0.5 * err(plain.numpy()), (err(guided), err(plain.numpy()))
