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
IF_BUILT=0
[ "${1:-}" = --if-built ] && IF_BUILT=1
ROOT=$PWD
HERE=$ROOT/scripts/ros2_control
LINK=$ROOT/.ros2_launch
log() { echo "[ros2-launch] $*"; }
# shellcheck source=scripts/ros2_control/common.sh
. "$HERE/common.sh"

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

req_hash=$(sha256sum "$REQUIREMENTS" | cut -c1-16)
install_requirements() {
  if [ "$(cat "$VENV/.dp_ros2_launch_requirements" 2>/dev/null)" != "$req_hash" ]; then
    log "installing $(basename "$REQUIREMENTS") into .venv"
    "$PY" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS" \
      > "$VENV/.dp_ros2_launch_pip.log" 2>&1 \
      || { tail -20 "$VENV/.dp_ros2_launch_pip.log"; log "pip install failed"; exit 1; }
    echo "$req_hash" > "$VENV/.dp_ros2_launch_requirements"
  fi
}

if [ -f "$WS/.complete" ]; then
  install_requirements
  ln -sfn "$PREFIX" "$LINK"
  log "up to date: $PREFIX"
  exit 0
fi
if [ "$IF_BUILT" = 1 ]; then
  rm -f "$LINK"
  log "not built for this workspace (make ros2-control builds it, ~25 s): its tests will skip"
  exit 0
fi
install_requirements
mkdir -p "$CACHE"
exec 9> "$CACHE/$key.lock"
flock 9
if [ -f "$WS/.complete" ]; then
  ln -sfn "$PREFIX" "$LINK"
  log "built meanwhile by another process: $PREFIX"
  exit 0
fi
start=$(date +%s)
dp_source_workspace
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export CMAKE_PREFIX_PATH=$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
py_inc=$("$PY" -c 'import sysconfig, numpy; print(sysconfig.get_paths()["include"] + ";" + numpy.get_include())')
tinyxml2=$(ls /usr/lib/*/libtinyxml2.so /usr/lib64/libtinyxml2.so 2>/dev/null | head -1 || true)
log "colcon build of ${#PACKAGES[@]} packages in $WS (log: $WS/build.log)"
cd "$WS"
if ! colcon build --merge-install --event-handlers console_cohesion- summary+ \
    --cmake-args -DBUILD_TESTING=OFF "-DCMAKE_PROJECT_INCLUDE=$HERE/wheel_fixups.cmake" \
      "-DDP_PYTHON_INCLUDE_DIRS=$py_inc" "-DDP_TINYXML2_LIBRARY=$tinyxml2" \
      "-DPython3_EXECUTABLE=$PY" "-DPYTHON_EXECUTABLE=$PY" \
    > "$WS/build.log" 2>&1; then
  grep -E "error|Error|Failed|failed" "$WS/build.log" | head -40
  log "colcon build failed: $WS/build.log"
  exit 1
fi
rm -rf "$WS/build" "$WS/log"
dp_portable_shebangs "$PREFIX" "$VENV"
touch "$WS/.complete"
ln -sfn "$PREFIX" "$LINK"
log "built in $(( $(date +%s) - start )) s: $PREFIX"
