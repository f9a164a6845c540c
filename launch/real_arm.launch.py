"""Policy + follower against an already running robot driver (ur_robot_driver, franka_ros2, ...).

    ros2 launch dp_bringup real_arm.launch.py robot:=ur5e checkpoint:=/path/to/policy.ckpt

The driver (ros2_control with joint_state_broadcaster and the controller named in the robot
config) and the cameras must already be running. The follower starts holding the current
position and only moves once chunks arrive; `ros2 service call /follower_node/hold
std_srvs/srv/Trigger` stops the arm at any time (decelerating within the limits).
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
    args = [
        DeclareLaunchArgument(
            'robot', default_value='ur5e',
            description='Robot config name in config/robots/ (ur5e, franka_fr3, embedded_arm).'),
        DeclareLaunchArgument(
            'checkpoint', description='Diffusion Policy checkpoint trained for this robot and cameras.'),
        DeclareLaunchArgument(
            'policy_params_file', default_value=PathJoinSubstitution([share, 'config', 'policy_node.yaml']),
            description='Parameters of policy_node.'),
        DeclareLaunchArgument(
            'follower_params_file', default_value=PathJoinSubstitution([share, 'config', 'follower.yaml']),
            description='Parameters of follower_node.'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', description='Follow /clock (bag replay).'),
    ]
    # A list of substitutions is concatenated: config/robots/<robot> + '.yaml'. (Not a list nested
    # inside PathJoinSubstitution: launch accepts that only since its 2025 releases, older Humble
    # and Jazzy syncs fail with "Failed to normalize given item of type list".)
    robot_config = [PathJoinSubstitution([share, 'config', 'robots', LaunchConfiguration('robot')]),
                    '.yaml']
    use_sim_time = LaunchConfiguration('use_sim_time')
    policy = Node(
        package='dp_policy_node', executable='policy_node', name='policy_node', output='screen',
        parameters=[LaunchConfiguration('policy_params_file'), robot_config,
                    {'checkpoint': LaunchConfiguration('checkpoint'), 'use_sim_time': use_sim_time}])
    follower = Node(
        package='dp_controller', executable='follower_node', name='follower_node', output='screen',
        parameters=[LaunchConfiguration('follower_params_file'), robot_config,
                    {'use_sim_time': use_sim_time}],
        remappings=[('trajectory', '/policy_node/trajectory')])
    return LaunchDescription(args + [dds, policy, follower])
