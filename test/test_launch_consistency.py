"""The launch files under launch/ and the process starter's graphs (dp_bringup/graphs.py) must
start the same executables with the same parameter files, arguments and remappings.

launch/launch_ros cannot be installed next to ROS 2 from PyPI wheels, so the launch files are read
as Python syntax trees (ast), not executed; where `launch_ros` imports, they are also executed.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from dp_bringup import graphs, starter

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch'


def _render(node: ast.AST, env: dict[str, ast.AST]) -> str:
    """A launch substitution as text: LaunchConfiguration('x') -> '<x>', paths joined by '/'."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.Name):
        if node.id == 'share':
            return '<share:dp_bringup>'
        if node.id in env:
            return _render(env[node.id], env)
        raise AssertionError(f'unknown name {node.id} in a launch file')
    if isinstance(node, ast.List):
        return ''.join(_render(e, env) for e in node.elts)
    if isinstance(node, ast.Call):
        fn = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        if fn == 'LaunchConfiguration':
            return f'<{node.args[0].value}>'
        if fn == 'PathJoinSubstitution':
            return '/'.join(_render(e, env) for e in node.args[0].elts)
        if fn == 'FindPackageShare':
            return f'<share:{node.args[0].value}>'
    raise AssertionError(f'cannot render {ast.dump(node)}')


def _kwargs(call: ast.Call) -> dict[str, ast.AST]:
    return {k.arg: k.value for k in call.keywords}


def parse_launch(path: Path) -> tuple[list[tuple], list[tuple]]:
    """(arguments, nodes) of a launch file: arguments as (name, default or None, description),
    nodes as (package, executable, name, [param files], sorted param keys, [remappings])."""
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef)
              and n.name == 'generate_launch_description')
    env = {t.id: a.value for a in ast.walk(fn) if isinstance(a, ast.Assign)
           for t in a.targets if isinstance(t, ast.Name)}
    arguments, nodes = [], []
    for call in ast.walk(fn):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            continue
        kw = _kwargs(call)
        if call.func.id == 'DeclareLaunchArgument':
            default = _render(kw['default_value'], env) if 'default_value' in kw else None
            arguments.append((call.args[0].value, default, kw['description'].value
                              if isinstance(kw['description'], ast.Constant)
                              else ''.join(ast.literal_eval(kw['description']))))
        elif call.func.id == 'Node':
            files, keys = [], []
            for p in kw.get('parameters', ast.List(elts=[])).elts:
                if isinstance(p, ast.Dict):
                    keys += [k.value for k in p.keys]
                else:
                    files.append(_render(p, env))
            remaps = [tuple(ast.literal_eval(r)) for r in kw.get('remappings', ast.List(elts=[])).elts]
            name = kw['name'].value if isinstance(kw['name'], ast.Constant) else ast.unparse(kw['name'])
            nodes.append((kw['package'].value, kw['executable'].value, name,
                          files, sorted(keys), remaps))
    return arguments, nodes


def graph_view(graph: graphs.Graph) -> tuple[list[tuple], list[tuple]]:
    """The same view of a starter graph: arguments given as '<name>' sentinels."""
    def default(arg):
        if arg.default is None:
            return None
        if isinstance(arg.default, tuple):
            return f'<share:{arg.default[0]}>/{arg.default[1]}'
        return str(arg.default)
    arguments = [(a.name, default(a), a.description) for a in graph.arguments]
    share = starter.share_file('dp_bringup')
    specs = graph.build({a.name: f'<{a.name}>' for a in graph.arguments})
    nodes = [(s.package, s.executable, s.name,
              [f.replace(share, '<share:dp_bringup>') for f in s.params_files],
              sorted(s.parameters), list(s.remappings)) for s in specs]
    return arguments, nodes


@pytest.mark.parametrize('launch_file', sorted(graphs.GRAPHS))
def test_launch_file_and_starter_graph_agree(launch_file):
    assert graph_view(graphs.GRAPHS[launch_file]) == parse_launch(LAUNCH / launch_file)


def test_every_launch_argument_is_described():
    for path in sorted(LAUNCH.glob('*.launch.py')):
        arguments, nodes = parse_launch(path)
        assert nodes, f'{path.name} starts no node'
        for name, _default, description in arguments:
            assert len(description) > 15, f'{path.name}: argument {name} lacks a description'


def test_parameter_files_and_executables_exist():
    """What the starter would run is installed: executables and every default parameter file."""
    for launch_file, graph in graphs.GRAPHS.items():
        given = {a.name: 'unused.ckpt' for a in graph.arguments if a.default is None}
        for spec in graph.build(given):
            assert starter.find_executable(spec.package, spec.executable).exists()
            for f in spec.params_files:
                assert Path(f).is_file(), f'{launch_file}: {spec.name} parameter file {f} missing'


def test_robot_configs_cover_both_nodes():
    import yaml
    robots = sorted((ROOT / 'config' / 'robots').glob('*.yaml'))   # not controllers/
    assert {p.stem for p in robots} >= {'embedded_arm', 'ur5e', 'franka_fr3'}
    for path in robots:
        cfg = yaml.safe_load(path.read_text())
        # sim_node: the simulated arm of a config for the embedded simulation (embedded_arm4)
        assert {'policy_node', 'follower_node'} <= set(cfg) <= \
            {'policy_node', 'follower_node', 'sim_node'}, path.name
        fol = cfg['follower_node']['ros__parameters']
        n = len(fol['joint_names'])
        assert cfg['policy_node']['ros__parameters']['joint_names'] == fol['joint_names']
        for key in ('position_lower_rad', 'position_upper_rad', 'max_velocity_rad_s',
                    'max_acceleration_rad_s2'):
            assert len(fol[key]) == n, f'{path.name}: {key} has not {n} entries'


@pytest.mark.skipif(importlib.util.find_spec('launch_ros') is None,
                    reason='launch_ros is not installed (ROS 2 from PyPI wheels)')
def test_launch_files_execute_where_launch_ros_exists():
    for path in sorted(LAUNCH.glob('*.launch.py')):
        spec = importlib.util.spec_from_file_location(path.stem.replace('.', '_'), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.generate_launch_description().entities


@pytest.mark.parametrize('robot,urdf_file', [('embedded_arm', 'arm.urdf'),
                                              ('embedded_arm_ee', 'arm.urdf'),
                                              ('embedded_arm4', 'arm4.urdf')])
def test_embedded_arm_limits_inside_the_urdf(robot, urdf_file):
    """The follower's limits for the embedded arms lie inside the URDF's <limit>s, which the
    controller manager (Jazzy+) enforces on every command and Gazebo / MuJoCo as joint ranges;
    an end-effector config's robot_description_file is that URDF."""
    import xml.etree.ElementTree as ET
    import yaml
    cfg = yaml.safe_load((ROOT / 'config' / 'robots' / f'{robot}.yaml').read_text())
    fol = cfg['follower_node']['ros__parameters']
    for node in ('policy_node', 'follower_node'):
        given = cfg[node]['ros__parameters'].get('robot_description_file')
        assert given in (None, f'package://dp_sim/description/{urdf_file}'), (robot, node)
    urdf = ET.parse(ROOT / 'src' / 'dp_sim' / 'description' / urdf_file).getroot()
    limits = {j.get('name'): j.find('limit') for j in urdf.iter('joint') if j.find('limit') is not None}
    for i, name in enumerate(fol['joint_names']):
        lim = limits[name]
        assert float(lim.get('lower')) < fol['position_lower_rad'][i], name
        assert fol['position_upper_rad'][i] < float(lim.get('upper')), name
        assert fol['max_velocity_rad_s'][i] <= float(lim.get('velocity')), name


# Hardware limits of the real arms, value by value, from the drivers' description packages:
# Universal_Robots_ROS2_Description config/ur5e/joint_limits.yaml (+-360 deg, elbow +-180 deg,
# 180 deg/s), franka_description robots/fr3/joint_limits.yaml (1.0.1; the URDF's soft limits equal
# them). Margins: UR 0.2 rad (the driver's URDF soft limits are 0.15 rad inside, safety_pos_margin),
# Franka 0.1 rad (crossing a hardware limit trips its reflex).
HARDWARE = {
    'ur5e': dict(lower=[-6.28319, -6.28319, -3.14159, -6.28319, -6.28319, -6.28319],
                 upper=[6.28319, 6.28319, 3.14159, 6.28319, 6.28319, 6.28319],
                 velocity=[3.14159] * 6, margin=0.2),
    'franka_fr3': dict(lower=[-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159],
                       upper=[2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159],
                       velocity=[2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26], margin=0.1),
}


@pytest.mark.parametrize('robot', sorted(HARDWARE))
def test_real_arm_limits_keep_their_margin_inside_the_hardware(robot):
    import numpy as np
    import yaml
    hw = HARDWARE[robot]
    fol = yaml.safe_load((ROOT / 'config' / 'robots' / f'{robot}.yaml').read_text())[
        'follower_node']['ros__parameters']
    lower, upper = np.array(fol['position_lower_rad']), np.array(fol['position_upper_rad'])
    m = hw['margin'] - 1e-4   # the configs round to 0.1 mrad
    assert np.all(lower >= np.array(hw['lower']) + m), (lower, hw['lower'])
    assert np.all(upper <= np.array(hw['upper']) - m), (upper, hw['upper'])
    assert np.all(lower < upper)
    assert np.all(np.array(fol['max_velocity_rad_s']) <= np.array(hw['velocity']))


def test_real_arm_configs_read_the_drivers_full_rate_joint_states():
    import yaml
    # franka_ros2's MoveIt launch: /joint_states is joint_state_publisher's 30 Hz merge; the
    # 1 kHz broadcaster publishes franka/joint_states. The UR launch has only the broadcaster's.
    expected = {'franka_fr3': '/franka/joint_states', 'ur5e': '/joint_states'}
    for robot, topic in expected.items():
        cfg = yaml.safe_load((ROOT / 'config' / 'robots' / f'{robot}.yaml').read_text())
        for node in ('policy_node', 'follower_node'):
            assert cfg[node]['ros__parameters']['joint_states_topic'] == topic, (robot, node)
