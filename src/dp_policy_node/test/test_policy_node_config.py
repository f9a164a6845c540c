"""policy_node parameters: the validated config (ROS-free), the YAML in config/ and the declared
ROS parameters tell the same story."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dp_policy_node.node_config import (PARAMETERS, ConfigError, PolicyNodeConfig, output_topic,
                                        robot_topic)

ROOT = Path(__file__).resolve().parents[3]
YAML = ROOT / 'config' / 'policy_node.yaml'
ROBOT_YAML = ROOT / 'config' / 'robots' / 'embedded_arm.yaml'


def test_node_config_does_not_import_rclpy():
    code = ('import sys, dp_policy_node.node_config; '
            'assert "rclpy" not in sys.modules, "node_config imports rclpy"')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_defaults_match_the_parameter_table():
    cfg = PolicyNodeConfig()
    for name, (default, description) in PARAMETERS.items():
        assert len(description) > 20, name
        if name == 'robot_namespaces':
            assert cfg.robot_namespaces == ['']
        else:
            assert getattr(cfg, name) == default, name
    assert cfg.trigger == 'observation' and cfg.policy_rate_hz == 10.0 and 1 <= cfg.num_threads <= 2


@pytest.mark.parametrize('kwargs, match', [
    ({'backend': 'tensorrt'}, 'backend'),
    ({'trigger': 'sometimes'}, 'trigger'),
    ({'policy_rate_hz': 0.0}, 'policy_rate_hz'),
    ({'max_observation_age_s': -1.0}, 'max_observation_age_s'),
    ({'num_samples': 0}, 'num_samples'),
    ({'num_threads': -1}, 'num_threads'),
    ({'max_images_per_camera': 1}, 'max_images_per_camera'),
    ({'camera_transports': ['h264']}, 'camera_transports'),
    ({'camera_topics': ['a'], 'camera_transports': ['raw', 'raw']}, 'camera_transports'),
    ({'robot_namespaces': ['r1', '/r1']}, 'duplicates'),
    ({'joint_names': ['a', 'a']}, 'duplicates'),
    ({'joint_states_topic': ''}, 'joint_states_topic'),
])
def test_invalid_values_name_the_parameter(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PolicyNodeConfig(**kwargs)


def test_checkpoint_fit_and_transports():
    cfg = PolicyNodeConfig(camera_topics=['/cam/image_raw/compressed', '/wrist/image_raw'])
    assert cfg.transports(cfg.camera_topics) == ['compressed', 'raw']
    joints, topics = cfg.check_against_checkpoint(['a', 'b'], ['top', 'wrist'])
    assert joints == ['a', 'b'] and topics == cfg.camera_topics
    with pytest.raises(ConfigError, match='camera_topics has 2 topics but the checkpoint has 1'):
        cfg.check_against_checkpoint(['a', 'b'], ['top'])
    with pytest.raises(ConfigError, match='joint_names has 1 names'):
        PolicyNodeConfig(joint_names=['x']).check_against_checkpoint(['a', 'b'], [])
    assert PolicyNodeConfig().check_against_checkpoint(['a'], ['top']) == (['a'], ['top'])


def test_topic_names_per_robot():
    assert robot_topic('', '/joint_states') == '/joint_states'
    assert robot_topic('r1', '/joint_states') == 'r1/joint_states'
    assert robot_topic('r1', 'camera/image_raw') == 'r1/camera/image_raw'
    assert output_topic('', '~/trajectory', 'policy_node') == '~/trajectory'
    assert output_topic('r1', '~/trajectory', 'policy_node') == 'r1/policy_node/trajectory'
    assert output_topic('r1', 'chunks', 'policy_node') == 'r1/chunks'


def test_from_params_converts_types():
    values = {'policy_rate_hz': 5, 'num_threads': 2.0, 'joint_names': ('a', 'b'), 'warmup': 0}
    cfg = PolicyNodeConfig.from_params(values.get)
    assert cfg.policy_rate_hz == 5.0 and isinstance(cfg.policy_rate_hz, float)
    assert cfg.num_threads == 2 and cfg.joint_names == ['a', 'b'] and cfg.warmup is False


def test_yaml_documents_every_parameter():
    text = YAML.read_text()
    assert text.splitlines()[0].startswith('#')
    body = text.split('ros__parameters:', 1)[1]
    keys = re.findall(r'^ {4}#? ?([a-z_0-9]+):', body, re.M)
    assert sorted(set(keys)) == sorted(PARAMETERS), set(keys) ^ set(PARAMETERS)
    for line in body.splitlines():
        m = re.match(r'^ {4}([a-z_0-9]+):', line)
        if m:
            assert '#' in line, f'uncommented key: {line}'


def test_yaml_files_load_into_the_node_and_robot_keys_keep_their_names():
    rclpy = pytest.importorskip('rclpy')
    from dp_policy_node.policy_node import PolicyNode

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, args=['--ros-args', '--params-file', str(YAML),
                                  '--params-file', str(ROBOT_YAML)])
    try:
        node = PolicyNode(context=ctx)
        assert node.lifecycle_state == 'unconfigured'      # checkpoint '' in the YAML
        assert "'checkpoint' is empty" in node.last_skip_reason
        get = node._param
        assert get('joint_names') == ['joint1', 'joint2', 'joint3']
        assert get('camera_topics') == ['/camera/image_raw'] and get('camera_transports') == ['raw']
        assert get('joint_states_topic') == '/joint_states'
        assert get('trajectory_topic') == '~/trajectory' and get('robot_namespaces') == ['']
        cfg = PolicyNodeConfig.from_params(get)
        assert cfg.trigger == 'observation' and cfg.num_threads == 1
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_readme_node_section_lists_every_parameter_and_interface():
    text = (ROOT / 'src' / 'dp_policy_node' / 'README.md').read_text()
    for name in PARAMETERS:
        assert f'| `{name}` |' in text, name
    for iface in ('~/trajectory', '~/action_chunk', '~/status', '~/reset_history', '~/set_enabled',
                  'sensor data', 'transient local'):
        assert iface in text, iface


def test_guidance_needs_a_urdf_and_valid_obstacles(tmp_path):
    from dp_policy_node.node_config import guidance_for
    with pytest.raises(ConfigError, match='robot_description_file'):
        PolicyNodeConfig(guidance=True)
    cfg = PolicyNodeConfig(guidance=True, robot_description_file=str(tmp_path / 'missing.urdf'))
    with pytest.raises(ConfigError, match='guidance'):
        guidance_for(cfg, ['joint1'], 0.1)
    assert PolicyNodeConfig(obstacles=['', ' ']).obstacles == []
