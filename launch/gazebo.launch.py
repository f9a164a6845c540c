"""Gazebo (gz sim) + gz_ros2_control with the embedded arm's URDF, controllers, camera bridge,
policy and follower, for ROS 2 Jazzy with Gazebo Harmonic (README "Gazebo": apt packages, and what
differs on Humble). Not installable on a machine with ROS 2 from PyPI wheels: use sim.launch.py,
whose embedded MuJoCo simulation speaks the same topics.

    ros2 launch dp_bringup gazebo.launch.py checkpoint:=/path/to/policy.ckpt

Order: Gazebo with the shipped world (its Sensors system renders the camera), robot_state_publisher
with the robot description (gz_ros2_control's <parameters> resolved to the controllers file's
absolute path: dp_bringup/gazebo.py says why), the arm created from it; once the create process
has exited, the controller spawners one after the other (joint_state_broadcaster,
forward_position_controller active, joint_trajectory_controller loaded inactive), each waiting
up to 60 s for the controller manager; the bridge, policy and follower meanwhile.
"""
from pathlib import Path

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction, RegisterEventHandler, SetEnvironmentVariable)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _robot(context):
    a = robot_actions(context)
    return [a['state_publisher'], a['create'], *a['chain']]


def robot_actions(context) -> dict:
    """robot_state_publisher with the description gz_ros2_control can use, the create process,
    and the spawners chained on its exit (each starts when the one before has exited)."""
    from ament_index_python.packages import get_package_share_directory

    from dp_bringup import gazebo
    sim_share = Path(get_package_share_directory('dp_sim'))
    description = gazebo.robot_description(
        (sim_share / 'description' / 'arm.urdf').read_text(),
        LaunchConfiguration('controllers_file').perform(context))
    state_publisher = Node(
        package='robot_state_publisher', executable='robot_state_publisher',
        name='robot_state_publisher',
        parameters=[{'robot_description': description, 'use_sim_time': True}])
    create = Node(
        package='ros_gz_sim', executable='create', name='spawn_arm',
        arguments=['-topic', 'robot_description', '-name', 'dp_arm'])
    spawners = [Node(package='controller_manager', executable='spawner', name=f'spawner_{name}',
                     arguments=gazebo.spawner_arguments(name, extra))
                for name, extra in gazebo.SPAWNED]
    chain = [RegisterEventHandler(OnProcessExit(target_action=before, on_exit=_then(after)))
             for before, after in zip([create] + spawners[:-1], spawners)]
    return dict(state_publisher=state_publisher, create=create, spawners=spawners, chain=chain)


def _then(after):
    """On the exit of the process before: start `after` if it succeeded, else say which one
    failed and shut the launch down (no chain of spawners each waiting out its timeout)."""
    def on_exit(event, context):
        if event.returncode == 0:
            return [after]
        why = f'{event.action.name} exited with {event.returncode}: the arm or its controllers ' \
              'are not there (see its output above)'
        return [LogInfo(msg=why), EmitEvent(event=Shutdown(reason=why))]
    return on_exit


def generate_launch_description():
    from dp_bringup import gazebo
    share = FindPackageShare('dp_bringup')
    # Fast DDS: camera frames through an 8 MB shared-memory segment (config/fastdds.xml says why);
    # a profile already set in the environment stays.
    dds = SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', EnvironmentVariable(
        'FASTDDS_DEFAULT_PROFILES_FILE',
        default_value=PathJoinSubstitution([share, 'config', 'fastdds.xml'])))
    args = [
        DeclareLaunchArgument(
            'checkpoint', default_value=PathJoinSubstitution([share, 'models', 'reach_image.ckpt']),
            description='Diffusion Policy checkpoint run by policy_node.'),
        DeclareLaunchArgument(
            'robot_config', default_value=PathJoinSubstitution([share, 'config', 'robots', 'embedded_arm.yaml']),
            description='Robot config: joint names, controller, limits.'),
        DeclareLaunchArgument(
            'policy_params_file', default_value=PathJoinSubstitution([share, 'config', 'policy_node.yaml']),
            description='Parameters of policy_node.'),
        DeclareLaunchArgument(
            'follower_params_file', default_value=PathJoinSubstitution([share, 'config', 'follower.yaml']),
            description='Parameters of follower_node.'),
        DeclareLaunchArgument(
            'controllers_file',
            default_value=PathJoinSubstitution([FindPackageShare('dp_sim'), 'config', 'controllers.yaml']),
            description="gz_ros2_control's controller manager parameters (an absolute path)."),
        DeclareLaunchArgument(
            'world', default_value=PathJoinSubstitution([share, 'config', 'gazebo', 'arm_task.sdf']),
            description='Gazebo world to load (it needs the Sensors system for the camera).'),
    ]
    gz = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py'])),
        launch_arguments={'gz_args': ['-r ', LaunchConfiguration('world')]}.items())
    bridge = Node(
        package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
        arguments=gazebo.bridge_arguments())
    policy = Node(
        package='dp_policy_node', executable='policy_node', name='policy_node', output='screen',
        parameters=[LaunchConfiguration('policy_params_file'), LaunchConfiguration('robot_config'),
                    {'checkpoint': LaunchConfiguration('checkpoint'), 'use_sim_time': True}])
    follower = Node(
        package='dp_controller', executable='follower_node', name='follower_node', output='screen',
        parameters=[LaunchConfiguration('follower_params_file'), LaunchConfiguration('robot_config'),
                    {'use_sim_time': True}],
        remappings=[('trajectory', '/policy_node/trajectory')])
    return LaunchDescription(args + [dds, gz, OpaqueFunction(function=_robot), bridge, policy,
                                     follower])
