# Source this file (bash) to use the workspace: `. scripts/env.sh`
# Activates .venv and the colcon install space (and, with a system ROS 2, keeps it underlaid).
_dp_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$_dp_root/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  export AMENT_PREFIX_PATH=$_dp_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
fi
# shellcheck disable=SC1091
. "$_dp_root/install/setup.bash"
export MUJOCO_GL=${MUJOCO_GL:-egl}
unset _dp_root
