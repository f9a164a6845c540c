#!/usr/bin/env bash
# The real `ros2 launch` (launch, launch_ros, ros2launch, launch_xml, launch_yaml, ros2cli,
# ros2pkg, composition_interfaces) for the tests that run the launch files as a user does, and for
# users without an apt ROS 2. Called by `make ros2-control` (and with --if-built by `make test`).
#
# - Where a ROS 2 is sourced (ROS_DISTRO set) its launch_ros is used and nothing is built.
# - Otherwise the pure-Python launch packages and the composition_interfaces messages (launch_ros
#   imports them; no wheel exists) are built with colcon from ../shared/ros2_control_src
#   (DP_ROS2_CONTROL_SRC) against the Kilted wheels of .venv, into a cache outside the clone,
#     ${DP_ROS2_LAUNCH_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dp_ros/ros2_launch}/<key>
#   (<key>: the archives, the package list, the CMake fix-ups, the Python requirements, the wheels,
#   the compiler). About 25 s on 2 cores.
#   `.ros2_launch` (git-ignored) in the clone points at the prefix; scripts/env.sh sources it.
# Without the sources: a message, exit 0, the tests of the launch files with the real launch_ros
# skip (dp_launch, the project's own starter, runs the same launch files without ROS).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ros2_control/common.sh
. scripts/ros2_control/common.sh "$@"     # ROOT, HERE, IF_BUILT (--if-built: never builds)
LINK=$ROOT/.ros2_launch
log() { echo "[ros2-launch] $*"; }

if [ -n "${ROS_DISTRO:-}" ]; then
  log "using ROS 2 $ROS_DISTRO's launch_ros; nothing to build"
  rm -f "$LINK"
  exit 0
fi
SRC=${DP_ROS2_CONTROL_SRC:-$ROOT/../shared/ros2_control_src}
if [ ! -d "$SRC" ]; then
  log "no sources at $SRC (set DP_ROS2_CONTROL_SRC) and no ROS 2 sourced: not built;"
  log "the tests with the real launch_ros will skip"
  rm -f "$LINK"
  exit 0
fi
VENV=$ROOT/.venv
[ -x "$VENV/bin/python" ] || { log "no .venv: run make setup first"; exit 1; }
PY=$VENV/bin/python

# <archive>/<path inside the archive>
PACKAGES=(
  rcl_interfaces/composition_interfaces         # launch_ros imports them (LoadComposableNodes)
  launch/launch launch/launch_xml launch/launch_yaml
  launch_ros/launch_ros launch_ros/ros2launch
  ros2cli/ros2cli ros2cli/ros2pkg               # `ros2 launch` is a verb of the ros2 command
)
REQUIREMENTS=$HERE/launch_requirements.txt

archives=$(printf '%s\n' "${PACKAGES[@]}" | cut -d/ -f1 | sort -u)
key=$( (for a in $archives; do sha256sum "$SRC/$a.tar.gz" | cut -d' ' -f1; done
        printf '%s\n' "${PACKAGES[@]}"; cat "$REQUIREMENTS" "$HERE/wheel_fixups.cmake"
        "$PY" -m pip freeze 2>/dev/null | grep -i '^ros-' ; "$PY" --version; g++ --version | head -1) \
      | sha256sum | cut -c1-16)
CACHE=${DP_ROS2_LAUNCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dp_ros/ros2_launch}
WS=$CACHE/$key
PREFIX=$WS/install

# The prefix's Python packages need these in the venv (an existing prefix as well as a new one).
[ -f "$WS/.complete" ] && dp_pip_requirements "$REQUIREMENTS" dp_ros2_launch_requirements
dp_use_built "not built for this workspace (make ros2-control builds it, ~25 s): its tests will skip"
dp_pip_requirements "$REQUIREMENTS" dp_ros2_launch_requirements
dp_lock_build
start=$(date +%s)
dp_source_workspace
py_inc=$("$PY" -c 'import sysconfig, numpy; print(sysconfig.get_paths()["include"] + ";" + numpy.get_include())')
tinyxml2=$(ls /usr/lib/*/libtinyxml2.so /usr/lib64/libtinyxml2.so 2>/dev/null | head -1 || true)
log "colcon build of ${#PACKAGES[@]} packages in $WS (log: $WS/build.log)"
dp_colcon_build -DBUILD_TESTING=OFF "-DCMAKE_PROJECT_INCLUDE=$HERE/wheel_fixups.cmake" \
  "-DDP_PYTHON_INCLUDE_DIRS=$py_inc" "-DDP_TINYXML2_LIBRARY=$tinyxml2" \
  "-DPython3_EXECUTABLE=$PY" "-DPYTHON_EXECUTABLE=$PY"
touch "$WS/.complete"
ln -sfn "$PREFIX" "$LINK"
log "built in $(( $(date +%s) - start )) s: $PREFIX"
