"""What gazebo.launch.py hands to Gazebo, as plain functions (no launch, no Gazebo needed), so
that the tests check exactly what the launch file uses.

gz_ros2_control passes the text of the URDF's `<parameters>` element unchanged to its
controller manager as `--params-file` (gz_ros2_control_plugin.cpp, Configure): a `package://`
URI there is not resolved and the controller manager never starts. The launch file therefore
generates the robot description with the controllers file's absolute path in it.
"""
from __future__ import annotations

import re
from pathlib import Path

PARAMETERS = re.compile(r'<parameters>\s*([^<]*?)\s*</parameters>')
# Topics between Gazebo and ROS (ros_gz_bridge parameter_bridge: ROS name@ROS type[gz type =
# Gazebo to ROS): the simulation clock and the overhead camera (the URDF's <sensor><topic>).
BRIDGED = {'/clock': ('rosgraph_msgs/msg/Clock', 'gz.msgs.Clock'),
           '/camera/image_raw': ('sensor_msgs/msg/Image', 'gz.msgs.Image')}
# Controllers spawned after the robot exists, in this order: (name, extra spawner arguments).
SPAWNED = [('joint_state_broadcaster', []), ('forward_position_controller', []),
           ('joint_trajectory_controller', ['--inactive'])]
SPAWNER_TIMEOUT_S = 60   # --controller-manager-timeout: Gazebo may take a while to load the model


def robot_description(urdf_text: str, controllers_file: str) -> str:
    """The URDF with every gz_ros2_control `<parameters>` set to `controllers_file` (absolute)."""
    path = Path(controllers_file)
    if not path.is_absolute() or not path.is_file():
        raise FileNotFoundError(f'controllers file {controllers_file} (absolute path needed)')
    out, n = PARAMETERS.subn(f'<parameters>{path}</parameters>', urdf_text)
    if n == 0:
        raise ValueError('the URDF has no gz_ros2_control <parameters> element')
    return out


def bridge_arguments() -> list[str]:
    return [f'{topic}@{ros}[{gz}' for topic, (ros, gz) in BRIDGED.items()]


def spawner_arguments(name: str, extra: list[str]) -> list[str]:
    return [name, *extra, '--controller-manager', '/controller_manager',
            '--controller-manager-timeout', str(SPAWNER_TIMEOUT_S)]
