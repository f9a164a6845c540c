"""Config dataclasses: presets are valid, bad values are rejected with a clear message."""
import pytest

from dp_policy.config import (ModelConfig, SchedulerConfig, TrainConfig, VisionConfig, cpu_default,
                                   from_dict, paper, preset, to_dict)


def test_presets_match_the_paper_and_the_cpu_default():
    p = paper()
    assert p.model.down_dims == (256, 512, 1024) and p.model.kernel_size == 5
    assert (p.model.n_obs_steps, p.model.horizon, p.model.n_action_steps) == (2, 16, 8)
    assert p.vision.encoder == 'resnet18'
    assert p.scheduler.num_train_timesteps == 100 and p.scheduler.beta_schedule == 'squaredcos_cap_v2'
    assert p.scheduler.kind == 'ddim' and p.scheduler.num_inference_steps == 10
    assert cpu_default().model.down_dims == (64, 128, 256)
    assert preset('tiny').model.horizon == 16


def test_horizon_must_fit_the_unet_downsampling():
    ModelConfig(horizon=16, down_dims=(64, 128, 256))
    with pytest.raises(ValueError, match='divisible'):
        ModelConfig(horizon=10, down_dims=(64, 128, 256), n_action_steps=4)


@pytest.mark.parametrize('kwargs,match', [
    (dict(n_obs_steps=0), 'n_obs_steps'),
    (dict(n_action_steps=16), 'exceeds horizon'),
    (dict(kernel_size=4), 'odd'),
    (dict(down_dims=(60, 128), n_groups=8), 'n_groups'),
])
def test_model_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_other_configs_reject_bad_values():
    with pytest.raises(ValueError, match='encoder'):
        VisionConfig(encoder='vit')
    with pytest.raises(ValueError, match='kind'):
        SchedulerConfig(kind='euler')
    with pytest.raises(ValueError, match='num_inference_steps'):
        SchedulerConfig(num_inference_steps=101)
    with pytest.raises(ValueError, match='prediction_type'):
        SchedulerConfig(prediction_type='v')
    with pytest.raises(ValueError, match='ema'):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match='unknown preset'):
        preset('huge')


def test_dict_round_trip_and_unknown_keys():
    cfg = paper().model
    d = to_dict(cfg)
    assert d['down_dims'] == [256, 512, 1024]
    assert from_dict(ModelConfig, d) == cfg
    with pytest.raises(ValueError, match='unknown keys'):
        from_dict(ModelConfig, {**d, 'dropout': 0.1})
    assert VisionConfig(crop_ratio=0.875).crop_hw((96, 96)) == (84, 84)
