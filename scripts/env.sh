# Source this file (bash) to use the workspace: `. scripts/env.sh`
# Activates .venv and the colcon install space (and, with a system ROS 2, keeps it underlaid).
_dp_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$_dp_root/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  export AMENT_PREFIX_PATH=$_dp_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
fi
# The real ros2_control built by `make ros2-control` (a link into its cache; absent where a system
# ROS 2 provides ros2_control or it was not built): controller_manager, the controllers,
# control_msgs and controller_manager_msgs for the integration tests and dp_mock_arm.
if [ -z "${ROS_DISTRO:-}" ] && [ -f "$_dp_root/.ros2_control/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX=$(readlink -f "$_dp_root/.ros2_control") . "$_dp_root/.ros2_control/local_setup.bash"
fi
# The real launch / launch_ros / `ros2 launch` (scripts/ros2_control/launch.sh), likewise.
if [ -z "${ROS_DISTRO:-}" ] && [ -f "$_dp_root/.ros2_launch/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX=$(readlink -f "$_dp_root/.ros2_launch") . "$_dp_root/.ros2_launch/local_setup.bash"
fi
# shellcheck disable=SC1091
. "$_dp_root/install/setup.bash"
export MUJOCO_GL=${MUJOCO_GL:-egl}
# Fast DDS: an 8 MB shared-memory segment, so that camera frames (> 512 kB) are not dropped as UDP
# fragments (config/fastdds.xml says why). A profile the user set stays.
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$_dp_root/config/fastdds.xml}
# The user-facing console scripts on PATH (without the ros2 CLI there is no `ros2 run`):
# dp_train, dp_eval, dp_launch, dp_record_demos, policy_node, follower_node, sim_node, ...
for _dp_lib in "$_dp_root"/install/*/lib/dp_*; do
  case ":$PATH:" in *":$_dp_lib:"*) ;; *) [ -d "$_dp_lib" ] && PATH=$_dp_lib:$PATH ;; esac
done
export PATH
unset _dp_lib
unset _dp_root
