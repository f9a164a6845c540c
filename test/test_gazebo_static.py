"""gazebo.launch.py, checked without Gazebo (it cannot be installed on this machine): what it hands
to Gazebo and to the controller manager (issue 17, finding 7).

- the robot description gz_ros2_control gets names the controllers file by an absolute path that
  exists (gz_ros2_control passes `<parameters>` unchanged as --params-file: a package:// URI there
  left the controller manager unstarted);
- the shipped world has the Sensors system (without it no camera renders) and the other systems
  the launch needs;
- the bridged topics are the ones the nodes use (the URDF's camera sensor, the policy's camera);
- the spawned controllers exist in the controllers file, the follower's is active, the JTC is
  loaded inactive, and with the real launch the spawners run one after the other once the arm was
  created (event handlers), each with a controller-manager timeout;
- package.xml declares what a Jazzy user needs (rosdep installs it).
"""
from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from dp_bringup import gazebo

ROOT = Path(__file__).resolve().parents[1]
URDF = ROOT / 'src' / 'dp_sim' / 'description' / 'arm.urdf'
CONTROLLERS = ROOT / 'src' / 'dp_sim' / 'config' / 'controllers.yaml'
WORLD = ROOT / 'config' / 'gazebo' / 'arm_task.sdf'
LAUNCH = ROOT / 'src' / 'dp_bringup' / 'launch' / 'gazebo.launch.py'


def test_robot_description_names_the_controllers_file_by_an_absolute_path():
    text = URDF.read_text()
    assert '<parameters>package://' in text      # the file itself stays plain URDF
    desc = ET.fromstring(gazebo.robot_description(text, str(CONTROLLERS)))
    plugin = desc.find('gazebo/plugin')
    assert plugin.get('filename') == 'gz_ros2_control-system'
    assert plugin.get('name') == 'gz_ros2_control::GazeboSimROS2ControlPlugin'
    params = [p.text for p in desc.iter('parameters')]
    assert params == [str(CONTROLLERS)] and Path(params[0]).is_file()
    assert desc.find('ros2_control/hardware/plugin').text == 'gz_ros2_control/GazeboSimSystem'
    with pytest.raises(FileNotFoundError):
        gazebo.robot_description(text, 'package://dp_sim/config/controllers.yaml')


def test_world_renders_cameras():
    world = ET.parse(WORLD).getroot().find('world')
    systems = {p.get('name'): p for p in world.findall('plugin')}
    assert systems['gz::sim::systems::Sensors'].get('filename') == 'gz-sim-sensors-system'
    assert systems['gz::sim::systems::Sensors'].findtext('render_engine') == 'ogre2'
    for name, filename in (('gz::sim::systems::Physics', 'gz-sim-physics-system'),
                           ('gz::sim::systems::UserCommands', 'gz-sim-user-commands-system'),
                           ('gz::sim::systems::SceneBroadcaster',
                            'gz-sim-scene-broadcaster-system')):
        assert systems[name].get('filename') == filename


def test_bridged_topics_are_the_ones_the_nodes_use():
    robot = yaml.safe_load((ROOT / 'config' / 'robots' / 'embedded_arm.yaml').read_text())
    cameras = robot['policy_node']['ros__parameters']['camera_topics']
    transports = robot['policy_node']['ros__parameters']['camera_transports']
    sensors = ET.parse(URDF).getroot().findall('gazebo/sensor')
    sensor_topics = ['/' + s.findtext('topic').lstrip('/') for s in sensors if s.get('type') == 'camera']
    assert sensor_topics == cameras == ['/camera/image_raw'] and transports == ['raw']
    assert gazebo.BRIDGED['/camera/image_raw'] == ('sensor_msgs/msg/Image', 'gz.msgs.Image')
    assert gazebo.BRIDGED['/clock'] == ('rosgraph_msgs/msg/Clock', 'gz.msgs.Clock')
    assert gazebo.bridge_arguments() == ['/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock',
                                         '/camera/image_raw@sensor_msgs/msg/Image[gz.msgs.Image']


def test_spawned_controllers_exist_and_the_followers_is_active():
    cm = yaml.safe_load(CONTROLLERS.read_text())['controller_manager']['ros__parameters']
    robot = yaml.safe_load((ROOT / 'config' / 'robots' / 'embedded_arm.yaml').read_text())
    follower_controller = robot['follower_node']['ros__parameters'].get(
        'controller_name') or 'forward_position_controller'
    spawned = dict(gazebo.SPAWNED)
    for name in spawned:
        assert 'type' in cm[name], name
    assert spawned['joint_state_broadcaster'] == [] and spawned[follower_controller] == []
    assert spawned['joint_trajectory_controller'] == ['--inactive']
    args = gazebo.spawner_arguments('joint_trajectory_controller', ['--inactive'])
    assert args[:2] == ['joint_trajectory_controller', '--inactive']
    assert args[args.index('--controller-manager-timeout') + 1] == '60'


def test_package_xml_declares_the_gazebo_dependencies():
    deps = {e.text for e in ET.parse(ROOT / 'src' / 'dp_bringup' / 'package.xml').getroot()
            .iter('exec_depend')}
    assert {'ros_gz_sim', 'ros_gz_bridge', 'gz_ros2_control', 'controller_manager',
            'robot_state_publisher', 'ros2_controllers'} <= deps


@pytest.mark.skipif(importlib.util.find_spec('launch_ros') is None,
                    reason='the real launch_ros is not installed (make ros2-control builds it)')
def test_the_real_launch_orders_the_spawners_after_the_arm_is_created():
    from launch import LaunchContext
    from launch.actions import OpaqueFunction, RegisterEventHandler
    from launch.events.process import ProcessExited
    spec = importlib.util.spec_from_file_location('gazebo_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert sum(isinstance(e, OpaqueFunction) for e in ld.entities) == 1
    context = LaunchContext()
    context.launch_configurations['controllers_file'] = str(CONTROLLERS)
    a = module.robot_actions(context)
    assert a['create'].node_executable == 'create' and len(a['spawners']) == len(gazebo.SPAWNED)
    assert all(s.node_executable == 'spawner' for s in a['spawners'])
    assert all(isinstance(h, RegisterEventHandler) for h in a['chain'])
    # Each spawner starts when the process before it exits successfully (the create process,
    # then each spawner); a failure shuts the launch down instead.
    order = [a['create']] + a['spawners']
    for before, after in zip(order, order[1:]):
        for rc in (0, 1):
            exited = ProcessExited(action=before, name='x', cmd=['x'], cwd=None, env=None, pid=1,
                                   returncode=rc)
            (handler,) = [h.event_handler for h in a['chain'] if h.event_handler.matches(exited)]
            actions = handler.handle(exited, context)
            if rc == 0:
                assert actions == [after]
            else:
                assert [type(x).__name__ for x in actions] == ['LogInfo', 'EmitEvent']
    entities = module._robot(context)     # what the OpaqueFunction returns to launch
    assert [e.node_executable for e in entities[:2]] == ['robot_state_publisher', 'create']
    assert len(entities) == 2 + len(gazebo.SPAWNED)
