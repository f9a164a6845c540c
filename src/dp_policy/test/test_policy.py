"""DiffusionPolicy: the contract other packages use (shapes, determinism, sample choice, reset)."""
import numpy as np
import pytest

from dp_policy.checkpoint import create_untrained_checkpoint
from dp_policy.policy import DiffusionPolicy, coherent_sample

JOINTS = ['j0', 'j1', 'j2']


@pytest.fixture(scope='module')
def state_ckpt(tmp_path_factory):
    return create_untrained_checkpoint(tmp_path_factory.mktemp('p') / 's.ckpt', JOINTS, preset='tiny')


@pytest.fixture(scope='module')
def image_ckpt(tmp_path_factory):
    return create_untrained_checkpoint(tmp_path_factory.mktemp('p') / 'i.ckpt', JOINTS, ['top', 'wrist'],
                                       (32, 40), preset='tiny')


def obs(b, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (b, 2, 3)).astype(np.float32)


def test_meta_and_output_contract(state_ckpt):
    pol = DiffusionPolicy.from_checkpoint(state_ckpt, backend='torch', num_samples=3)
    m = pol.meta
    assert m.joint_names == JOINTS and m.camera_names == [] and m.image_hw is None
    assert (m.n_obs_steps, m.horizon, m.n_action_steps, m.state_dim, m.action_dim) == (2, 16, 8, 3, 3)
    assert m.dt_s == pytest.approx(0.1) and m.fingerprint == 'untrained'
    out = pol.predict(obs(2), stamps=[1.0, 1.0], robot_ids=['a', 'b'])
    assert out.actions.shape == (2, 16, 3) and out.actions.dtype == np.float64
    assert out.samples.shape == (2, 3, 16, 3)
    assert out.chosen.tolist() == [0, 0]                       # first chunk: sample 0
    assert out.first_action_index == 1 and out.backend == 'torch'
    assert out.num_inference_steps == 10 and out.scheduler == 'ddim' and out.latency_s > 0
    assert np.all(np.abs(out.samples) <= 3.14159 + 1e-6)       # clipped sample, unnormalised range


def test_fixed_noise_is_deterministic_and_noise_matters(state_ckpt):
    pol = DiffusionPolicy.from_checkpoint(state_ckpt, backend='torch', num_samples=2)
    noise = np.random.default_rng(1).standard_normal((1, 2, 16, 3)).astype(np.float32)
    a = pol.predict(obs(1), noise=noise).samples
    b = pol.predict(obs(1), noise=noise).samples
    assert np.array_equal(a, b)
    assert not np.allclose(a[0, 0], a[0, 1])
    # a robot's result does not depend on the others in its batch
    both = pol.predict(np.concatenate([obs(1), obs(1, seed=5)]), noise=np.concatenate([noise, noise])).samples
    assert np.allclose(both[0], a[0], atol=1e-5)
    with pytest.raises(ValueError, match='noise must be'):
        pol.predict(obs(1), noise=noise[:, :1])


def test_fewer_inference_steps_changes_the_result(state_ckpt):
    noise = np.random.default_rng(1).standard_normal((1, 1, 16, 3)).astype(np.float32)
    a = DiffusionPolicy.from_checkpoint(state_ckpt, backend='torch').predict(obs(1), noise=noise)
    b = DiffusionPolicy.from_checkpoint(state_ckpt, backend='torch', num_inference_steps=3).predict(obs(1), noise=noise)
    assert b.num_inference_steps == 3 and not np.allclose(a.actions, b.actions)


def test_images_of_any_size_and_bad_inputs(image_ckpt):
    pol = DiffusionPolicy.from_checkpoint(image_ckpt, backend='torch')
    assert pol.meta.camera_names == ['top', 'wrist'] and pol.meta.image_hw == (32, 40)
    imgs = {'top': np.zeros((2, 2, 32, 40, 3), np.uint8), 'wrist': np.full((2, 2, 64, 64, 3), 200, np.uint8)}
    assert pol.predict(obs(2), imgs).actions.shape == (2, 16, 3)
    with pytest.raises(ValueError, match="missing images for camera 'wrist'"):
        pol.predict(obs(2), {'top': imgs['top']})
    with pytest.raises(ValueError, match='uint8'):
        pol.predict(obs(2), {**imgs, 'top': imgs['top'].astype(np.float32)})
    with pytest.raises(ValueError, match='state must be'):
        pol.predict(np.zeros((2, 3, 3), np.float32), imgs)


def test_coherent_sample_uses_absolute_time_alignment():
    dt, f = 0.1, 1
    T = 16
    ramp = np.arange(T, dtype=float)[:, None]              # prev chunk: value = index
    prev_stamp = 10.0
    # new obs 0.4 s later: new index i is for prev index i + 4
    good = (np.arange(T) + 4.0)[:, None]
    bad = np.arange(T, dtype=float)[:, None]                # not shifted: wrong in time
    samples = np.stack([bad, good, bad + 5])
    k, n = coherent_sample(samples, prev_stamp + 0.4, prev_stamp, ramp, dt, f)
    assert k == 1 and n == 11                           # new indices 1..11 overlap prev 5..15
    # no overlap: more than a chunk later
    assert coherent_sample(samples, prev_stamp + 5.0, prev_stamp, ramp, dt, f) == (0, 0)


def test_sample_choice_per_robot_and_reset(state_ckpt):
    pol = DiffusionPolicy.from_checkpoint(state_ckpt, backend='torch', num_samples=4)
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((2, 4, 16, 3)).astype(np.float32)
    first = pol.predict(obs(2), stamps=[5.0, 7.0], robot_ids=['r1', 'r2'], noise=noise)
    # the same observation and noise again, 0 s later: the sample identical to the stored chunk wins,
    # whichever index it has -> permute the noise per robot and check the choice follows it
    perm1, perm2 = [2, 0, 3, 1], [1, 3, 0, 2]
    noise2 = np.stack([noise[0, perm1], noise[1, perm2]])
    again = pol.predict(obs(2), stamps=[5.0, 7.0], robot_ids=['r1', 'r2'], noise=noise2)
    assert again.chosen.tolist() == [perm1.index(0), perm2.index(0)]
    # the same sample in another row of the batch: equal within float32 rounding (actions ~3)
    assert np.allclose(again.actions, first.actions, rtol=1e-5, atol=1e-5)
    pol.reset('r1')
    third = pol.predict(obs(2), stamps=[5.0, 7.0], robot_ids=['r1', 'r2'], noise=noise)
    assert third.chosen[0] == 0 and third.chosen[1] == 0   # r1 forgotten; r2 coherent with sample 0
    pol.reset()
    # clock going backwards forgets too
    pol.predict(obs(1), stamps=[5.0], robot_ids=['r1'], noise=noise[:1])
    back = pol.predict(obs(1), stamps=[1.0], robot_ids=['r1'], noise=noise2[:1])
    assert back.chosen[0] == 0
    with pytest.raises(ValueError, match='robot_ids'):
        pol.predict(obs(2), stamps=[0.0, 0.0], robot_ids=['x'])
