"""Embedded MuJoCo simulation + policy + follower (no Gazebo needed).

    ros2 launch dp_bringup sim.launch.py [checkpoint:=...] [output_mode:=joint_trajectory]

Where launch_ros is not installed (ROS 2 from PyPI wheels), `dp_launch sim.launch.py` starts the
same executables with the same parameter files (dp_bringup/graphs.py; a test compares them).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('dp_bringup')
    # Fast DDS: camera frames through an 8 MB shared-memory segment (config/fastdds.xml says why);
    # a profile already set in the environment stays.
    dds = SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', EnvironmentVariable(
        'FASTDDS_DEFAULT_PROFILES_FILE',
        default_value=PathJoinSubstitution([share, 'config', 'fastdds.xml'])))
    use_sim_time = LaunchConfiguration('use_sim_time')
    args = [
        DeclareLaunchArgument(
            'checkpoint', default_value=PathJoinSubstitution([share, 'models', 'reach_image.ckpt']),
            description='Diffusion Policy checkpoint (dp_train output) run by policy_node.'),
        DeclareLaunchArgument(
            'robot_config', default_value=PathJoinSubstitution([share, 'config', 'robots', 'embedded_arm.yaml']),
            description='Robot config: joint names, controller, limits (layered after the node params; '
                        'its sim_node section, if any, picks the simulated arm).'),
        DeclareLaunchArgument(
            'sim_params_file', default_value=PathJoinSubstitution([share, 'config', 'sim.yaml']),
            description='Parameters of sim_node (physics, camera, task).'),
        DeclareLaunchArgument(
            'policy_params_file', default_value=PathJoinSubstitution([share, 'config', 'policy_node.yaml']),
            description='Parameters of policy_node.'),
        DeclareLaunchArgument(
            'follower_params_file', default_value=PathJoinSubstitution([share, 'config', 'follower.yaml']),
            description='Parameters of follower_node.'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='true',
            description='All nodes follow /clock published by sim_node.'),
        DeclareLaunchArgument(
            'output_mode', default_value='forward_command',
            description="follower output: 'forward_command' (forward_position_controller/commands) "
                        "or 'joint_trajectory' (joint_trajectory_controller/joint_trajectory)."),
    ]
    sim = Node(
        package='dp_sim', executable='sim_node', name='sim_node', output='screen',
        parameters=[LaunchConfiguration('sim_params_file'), LaunchConfiguration('robot_config'),
                    {'use_sim_time': use_sim_time, 'publish_clock': use_sim_time}])
    policy = Node(
        package='dp_policy_node', executable='policy_node', name='policy_node', output='screen',
        parameters=[LaunchConfiguration('policy_params_file'), LaunchConfiguration('robot_config'),
                    {'checkpoint': LaunchConfiguration('checkpoint'), 'use_sim_time': use_sim_time}])
    follower = Node(
        package='dp_controller', executable='follower_node', name='follower_node', output='screen',
        parameters=[LaunchConfiguration('follower_params_file'), LaunchConfiguration('robot_config'),
                    {'output_mode': LaunchConfiguration('output_mode'), 'use_sim_time': use_sim_time}],
        remappings=[('trajectory', '/policy_node/trajectory')])
    return LaunchDescription(args + [dds, sim, policy, follower])
