"""Every parameter our controller YAMLs set exists in the REAL controllers (marked ros2_control).

ros2_controllers declare their parameters with generate_parameter_library, whose generated
headers (`include/<controller>/<controller>_parameters.hpp`, installed by the build of
`make ros2-control` and by the apt packages alike) list every name: fixed ones as
`declare_parameter(prefix_ + "name"`, per-joint maps as `fmt::format("{}{}.{}.{}", prefix_,
"gains", value, "p")`. A key the controller does not declare is silently ignored by the
controller manager: Jazzy removed JTC's `open_loop_control` and `state_publish_rate`, and a file
that still sets them configures nothing. Skips where ros2_control is not installed.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dp_bringup.mock_arm import find_installation, missing_reason

INSTALLATION = find_installation()
pytestmark = [pytest.mark.ros2_control,
              pytest.mark.skipif(INSTALLATION is None, reason=INSTALLATION is None and
                                 missing_reason() or '')]

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / 'src' / 'dp_sim' / 'config' / 'controllers.yaml',
         ROOT / 'src' / 'dp_sim' / 'config' / 'mock_controllers.yaml']
TYPES = {  # controller type -> (package, generated header)
    'joint_trajectory_controller/JointTrajectoryController':
        ('joint_trajectory_controller', 'joint_trajectory_controller_parameters.hpp'),
    'forward_command_controller/ForwardCommandController':
        ('forward_command_controller', 'forward_command_controller_parameters.hpp'),
    'joint_state_broadcaster/JointStateBroadcaster':
        ('joint_state_broadcaster', 'joint_state_broadcaster_parameters.hpp'),
}


def declared(package: str, header: str) -> list[re.Pattern]:
    """Patterns of the parameter names the controller declares (map keys: any segment)."""
    text = (INSTALLATION.prefix / 'include' / package / header).read_text()
    names = [re.escape(n) for n in re.findall(r'declare_parameter\(prefix_ \+ "([^"]+)"', text)]
    for parts in re.findall(r'fmt::format\("[{}.]+", prefix_, ([^)]*)\)', text):
        segs = [s.strip() for s in parts.split(',')]
        names.append(r'\.'.join(re.escape(s.strip('"')) if s.startswith('"') else r'[^.]+'
                                for s in segs))
    assert names, f'no parameters found in {package}/{header}'
    return [re.compile(n + r'$') for n in names]


def flatten(d: dict, prefix: str = '') -> list[str]:
    out = []
    for k, v in d.items():
        key = f'{prefix}{k}'
        out += flatten(v, key + '.') if isinstance(v, dict) else [key]
    return out


@pytest.mark.parametrize('path', FILES, ids=lambda p: p.name)
def test_controller_yaml_keys_exist_in_the_real_controllers(path):
    cfg = yaml.safe_load(path.read_text())
    cm = cfg['controller_manager']['ros__parameters']
    controllers = {name: v['type'] for name, v in cm.items() if isinstance(v, dict) and 'type' in v}
    assert controllers, path
    unknown = []
    for name, ctype in controllers.items():
        patterns = declared(*TYPES[ctype])
        for key in flatten(cfg.get(name, {}).get('ros__parameters', {})):
            if not any(p.match(key) for p in patterns):
                unknown.append(f'{name}.{key}')
    assert not unknown, f'{path.name}: not parameters of the real controllers: {unknown}'


@pytest.mark.parametrize('path', sorted((ROOT / 'config' / 'robots' / 'controllers').glob('*.yaml')),
                         ids=lambda p: p.name)
def test_recommended_robot_controller_keys_exist_in_the_real_jtc(path):
    """config/robots/controllers/*.yaml: every key a JointTrajectoryController parameter of the
    built (Kilted) controller; Humble's open_loop_control is only a comment there."""
    patterns = declared(*TYPES['joint_trajectory_controller/JointTrajectoryController'])
    cfg = yaml.safe_load(path.read_text())
    assert cfg
    unknown = [f'{name}.{key}' for name, section in cfg.items()
               for key in flatten(section['ros__parameters'])
               if not any(p.match(key) for p in patterns)]
    assert not unknown, f'{path.name}: not parameters of joint_trajectory_controller: {unknown}'
