"""Gazebo (gz sim) + gz_ros2_control with the embedded arm's URDF, controllers, camera bridge,
policy and follower. Needs a ROS 2 install with ros_gz_sim, ros_gz_bridge, gz_ros2_control and
ros2_controllers (not installable on a machine with ROS 2 from PyPI wheels: use sim.launch.py,
whose embedded MuJoCo simulation speaks the same topics).

    ros2 launch dp_bringup gazebo.launch.py checkpoint:=/path/to/policy.ckpt
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import Command, EnvironmentVariable, FindExecutable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('dp_bringup')
    # Fast DDS: camera frames through an 8 MB shared-memory segment (config/fastdds.xml says why);
    # a profile already set in the environment stays.
    dds = SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', EnvironmentVariable(
        'FASTDDS_DEFAULT_PROFILES_FILE',
        default_value=PathJoinSubstitution([share, 'config', 'fastdds.xml'])))
    sim_share = FindPackageShare('dp_sim')
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
            'world', default_value='empty.sdf', description='Gazebo world to load.'),
    ]
    robot_description = ParameterValue(
        Command([FindExecutable(name='cat'), ' ', PathJoinSubstitution([sim_share, 'description', 'arm.urdf'])]),
        value_type=str)
    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py'])),
        launch_arguments={'gz_args': ['-r ', LaunchConfiguration('world')]}.items())
    state_publisher = Node(
        package='robot_state_publisher', executable='robot_state_publisher', name='robot_state_publisher',
        parameters=[{'robot_description': robot_description, 'use_sim_time': True}])
    spawn = Node(
        package='ros_gz_sim', executable='create', name='spawn_arm',
        arguments=['-topic', 'robot_description', '-name', 'dp_arm'])
    spawners = [
        Node(package='controller_manager', executable='spawner', name=f'spawner_{c}',
             arguments=[c, '--controller-manager', '/controller_manager'])
        for c in ('joint_state_broadcaster', 'forward_position_controller')]
    bridge = Node(
        package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
        arguments=['/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock',
                   '/camera/image_raw@sensor_msgs/msg/Image[gz.msgs.Image'])
    policy = Node(
        package='dp_policy_node', executable='policy_node', name='policy_node', output='screen',
        parameters=[LaunchConfiguration('policy_params_file'), LaunchConfiguration('robot_config'),
                    {'checkpoint': LaunchConfiguration('checkpoint'), 'use_sim_time': True}])
    follower = Node(
        package='dp_controller', executable='follower_node', name='follower_node', output='screen',
        parameters=[LaunchConfiguration('follower_params_file'), LaunchConfiguration('robot_config'),
                    {'use_sim_time': True}],
        remappings=[('trajectory', '/policy_node/trajectory')])
    return LaunchDescription(args + [dds, gazebo, state_publisher, spawn, *spawners, bridge, policy, follower])
