"""metrics.py: known answers."""
import numpy as np
import pytest

from dp_common import metrics


def test_horizon_errors_known_values_and_mask():
    truth = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[:, :, 0] = 1.0           # joint a off by 1 everywhere
    pred[:, 2, 1] = 2.0           # joint b off by 2 at the last step
    mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    out = metrics.horizon_errors(pred, truth, mask, ['a', 'b'])
    assert out['mae_per_joint']['a'] == pytest.approx(1.0)
    # joint b: one error of 2 among 5 valid points
    assert out['mae_per_joint']['b'] == pytest.approx(2.0 / 5)
    assert out['rmse_per_step'][0] == pytest.approx(np.sqrt(0.5))
    assert out['rmse_per_step'][2] == pytest.approx(np.sqrt((1 + 4) / 2))
    assert out['count_per_step'] == [2, 2, 1]
    with pytest.raises(ValueError):
        metrics.horizon_errors(pred, truth[:1])


def test_mode_divergence_detects_a_missed_mode():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 8)[:, None]
    up = np.concatenate([t, t], 1)
    demo = np.stack([up * (1 if i % 2 else -1) + 0.01 * rng.normal(size=up.shape)
                     for i in range(40)])                                 # 50/50 modes
    both = np.stack([np.stack([demo[i], demo[(i + 1) % 40]]) for i in range(40)])
    one = np.stack([np.stack([up, up]) for _ in range(40)])              # only one mode
    good = metrics.mode_divergence(demo, both)
    bad = metrics.mode_divergence(demo, one)
    assert good['js_bits'] == pytest.approx(0.0, abs=1e-6)
    assert good['modes_covered'] == 2
    assert bad['modes_covered'] == 1
    assert bad['js_bits'] > 0.3 and bad['kl_demo_pred_bits'] > 1.0


def test_mode_model_user_function():
    demo = np.zeros((4, 5, 2))
    demo[:2, -1, 1] = 1.0
    demo[2:, -1, 1] = -1.0
    model = metrics.ModeModel.from_function(lambda tr: 'left' if tr[-1, 1] > 0 else 'right',
                                            ['left', 'right'])
    out = metrics.mode_divergence(demo, demo[:, None], model=model)
    assert out['modes'] == ['left', 'right'] and out['demo_hist'] == [0.5, 0.5]


def test_jerk_of_a_cubic_is_constant():
    dt = 0.1
    t = np.arange(10) * dt
    traj = (t ** 3)[None, :, None]                  # d3/dt3 = 6
    assert np.allclose(metrics.jerk(traj, dt), 6.0)
    st = metrics.jerk_stats(traj, np.zeros_like(traj), dt)
    assert st['pred_rms'] == pytest.approx(6.0) and st['demo_rms'] == 0.0


def test_latency_stats_ignores_non_finite():
    st = metrics.latency_stats([0.1, 0.2, float('nan'), None, 0.3])
    assert st['n'] == 3 and st['mean_s'] == pytest.approx(0.2) and st['max_s'] == 0.3
    assert metrics.latency_stats([])['n'] == 0
