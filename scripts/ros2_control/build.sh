#!/usr/bin/env bash
# `make ros2-control`: the real ros2_control for the integration tests (and for users without an
# apt ROS 2): controller_manager (ros2_control_node, spawner), joint_trajectory_controller,
# forward_command_controller, joint_state_broadcaster, mock_components/GenericSystem
# (hardware_interface) and control_msgs' Python interfaces.
#
# - Where a ROS 2 with ros2_control is sourced (apt: ros-$ROS_DISTRO-ros2-control,
#   ros-$ROS_DISTRO-ros2-controllers), that one is used and nothing is built.
# - Otherwise the sources in ../shared/ros2_control_src (DP_ROS2_CONTROL_SRC) are compiled with
#   colcon against the ROS 2 Kilted wheels of .venv: the packages listed in PACKAGES below (the
#   smallest set that gives the targets above), the patches in patches/ applied (each says why).
#   The install prefix lands in a cache outside the clone,
#     ${DP_ROS2_CONTROL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dp_ros/ros2_control}/<key>
#   where <key> hashes what the build depends on (archives, package list, CMake arguments,
#   patches, CMake fix-ups, requirements, the venv's ROS wheels, the compiler): a second call with
#   nothing changed only checks the key (seconds); a change of any of them builds a new prefix.
#   `--if-built` (make test) only links a prefix that exists. `.ros2_control` (git-ignored) in the clone points at the prefix
#   in use; scripts/env.sh sources its setup when it exists.
# Build time on the 2-core machine: README.md ("The real ros2_control").
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ros2_control/common.sh
. scripts/ros2_control/common.sh "$@"     # ROOT, HERE, IF_BUILT (--if-built: never builds or apt-gets)
LINK=$ROOT/.ros2_control
log() { echo "[ros2-control] $*"; }

# ------------------------------------------------------------------ a sourced ROS 2 with ros2_control
if [ -n "${ROS_DISTRO:-}" ]; then
  missing=""
  for p in controller_manager joint_trajectory_controller forward_command_controller \
           joint_state_broadcaster hardware_interface control_msgs; do
    found=0
    ament_prefixes=${AMENT_PREFIX_PATH:-}
    for prefix in ${ament_prefixes//:/ }; do
      [ -e "$prefix/share/ament_index/resource_index/packages/$p" ] && { found=1; break; }
    done
    [ $found = 1 ] || missing="$missing $p"
  done
  if [ -z "$missing" ]; then
    log "using ROS 2 $ROS_DISTRO's ros2_control from AMENT_PREFIX_PATH; nothing to build"
    rm -f "$LINK"
    exit 0
  fi
  log "ROS 2 $ROS_DISTRO is sourced but lacks:$missing"
  log "install them (apt-get install ros-$ROS_DISTRO-ros2-control ros-$ROS_DISTRO-ros2-controllers)"
  [ "$IF_BUILT" = 1 ] && { log "its tests will skip"; exit 0; }
  exit 1
fi

SRC=${DP_ROS2_CONTROL_SRC:-$ROOT/../shared/ros2_control_src}
if [ ! -d "$SRC" ]; then
  # Not an error: the integration tests then skip and say why (a machine without the sources
  # and without an apt ROS 2 has no ros2_control to test against).
  log "no ros2_control sources at $SRC (set DP_ROS2_CONTROL_SRC) and no ROS 2 sourced: not built;"
  log "its integration tests will skip"
  exit 0
fi
VENV=$ROOT/.venv
[ -x "$VENV/bin/python" ] || { log "no .venv: run make setup first"; exit 1; }
PY=$VENV/bin/python

# Packages built, as <archive>/<path inside the archive>. Everything else in the archives is left
# out: the ROS 2 core (rcl, rmw, messages, ament) comes from the wheels.
PACKAGES=(
  ament_cmake/ament_cmake_auto                  # no wheel
  rcl_interfaces/statistics_msgs                # the rest of rcl_interfaces are wheels
  libstatistics_collector/.
  rclcpp/rclcpp rclcpp/rclcpp_action rclcpp/rclcpp_lifecycle
  class_loader/. pluginlib/pluginlib
  tinyxml2_vendor/. console_bridge_vendor/. eigen3_cmake_module/.
  urdf/urdf urdf/urdf_parser_plugin
  angles/angles diagnostics/diagnostic_updater
  RSL/. cpp_polyfills/tcb_span
  generate_parameter_library/generate_parameter_library
  generate_parameter_library/generate_parameter_library_py
  pal_statistics/pal_statistics pal_statistics/pal_statistics_msgs backward_ros/.
  control_msgs/control_msgs ros2_control_cmake/ros2_control_cmake
  realtime_tools/realtime_tools control_toolbox/control_toolbox
  ros2_control/controller_interface ros2_control/controller_manager
  ros2_control/controller_manager_msgs ros2_control/hardware_interface ros2_control/joint_limits
  ros2_controllers/joint_trajectory_controller ros2_controllers/forward_command_controller
  ros2_controllers/joint_state_broadcaster
  ros2cli/ros2cli ros2cli/ros2param ros2cli/ros2node ros2cli/ros2service   # the spawner's ros2param
)
APT_PACKAGES="liburdfdom-dev libtinyxml2-dev libconsole-bridge-dev libeigen3-dev libfmt-dev \
libspdlog-dev libboost-dev libcap-dev libexpected-dev liblttng-ust-dev libdw-dev"

# ------------------------------------------------------------------ Python packages
dp_pip_requirements "$HERE/requirements.txt" dp_ros2_control_requirements

# ------------------------------------------------------------------ cache key
archives=$(printf '%s\n' "${PACKAGES[@]}" | cut -d/ -f1 | sort -u)
py_inc=$("$PY" -c 'import sysconfig, numpy; print(sysconfig.get_paths()["include"] + ";" + numpy.get_include())')
find_tinyxml2() { ls /usr/lib/*/libtinyxml2.so /usr/lib64/libtinyxml2.so 2>/dev/null | head -1 || true; }
tinyxml2=$(find_tinyxml2)
if [ -z "$tinyxml2" ] && [ "$IF_BUILT" = 1 ]; then
  log "libtinyxml2.so not found (libtinyxml2-dev): not built here (make ros2-control installs it and builds, ~10 min): its tests will skip"
  rm -f "$LINK"
  exit 0
fi
if [ -z "$tinyxml2" ] && [ "$(id -u)" = 0 ]; then   # a fresh machine: the build needs it in the key
  log "apt-get install libtinyxml2-dev"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtinyxml2-dev >/dev/null
  tinyxml2=$(find_tinyxml2)
fi
[ -n "$tinyxml2" ] || { log "libtinyxml2.so not found (libtinyxml2-dev)"; exit 1; }
CMAKE_ARGS=(-DBUILD_TESTING=OFF -DCMAKE_CXX_STANDARD=17
  # optimised like a distribution's packages: the controller manager runs a 500 Hz loop next to
  # the follower on 2 cores (unoptimised: 20% of a core in its executor thread, overruns)
  -DCMAKE_BUILD_TYPE=Release
  # the wheels' message targets export their rosidl_generator_py libraries, which leave the
  # Python C API to the process: an executable linking them fails without this (at run time the
  # Python processes have libpython; ros2_control_node gets it by LD_PRELOAD, see
  # dp_bringup/mock_arm.py)
  "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined"
  "-DCMAKE_PROJECT_INCLUDE=$HERE/wheel_fixups.cmake"
  "-DDP_PYTHON_INCLUDE_DIRS=$py_inc" "-DDP_TINYXML2_LIBRARY=$tinyxml2"
  "-DPython3_EXECUTABLE=$PY" "-DPYTHON_EXECUTABLE=$PY")
# What the build depends on (not this script's comments and messages): the archives, the package
# list, the CMake arguments, patches, CMake fix-ups, requirements, the wheels, the compiler; not
# the clone's path: a prefix runs with any .venv of the same wheels (the C++ processes get their
# library path from dp_bringup/mock_arm.py), so other clones on the machine reuse it.
key=$( (for a in $archives; do sha256sum "$SRC/$a.tar.gz" | cut -d' ' -f1; done
        printf '%s\n' "${PACKAGES[@]}" "${CMAKE_ARGS[@]}" | sed "s|$ROOT|<clone>|g"
        cat "$HERE"/requirements.txt "$HERE"/wheel_fixups.cmake "$HERE"/patches/*.patch
        "$PY" -m pip freeze 2>/dev/null | grep -i '^ros-' ; "$PY" --version; g++ --version | head -1) \
      | sha256sum | cut -c1-16)
CACHE=${DP_ROS2_CONTROL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dp_ros/ros2_control}
WS=$CACHE/$key
PREFIX=$WS/install
dp_use_built "not built for this workspace (make ros2-control builds it, ~10 min): its tests will skip"

# ------------------------------------------------------------------ system packages (to build)
missing_apt=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_apt="$missing_apt $p"
done
if [ -n "$missing_apt" ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install$missing_apt"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing_apt >/dev/null
  else
    log "missing Debian packages:$missing_apt (sudo apt-get install$missing_apt)"
    exit 1
  fi
fi

# ------------------------------------------------------------------ extract, patch, build
dp_lock_build
start=$(date +%s)
dp_source_workspace
# patches/<package>--<what>.patch apply inside src/<package> (-p1)
for patch in "$HERE"/patches/*.patch; do
  pkg=$(basename "$patch"); pkg=${pkg%%--*}
  log "patch $pkg: $(basename "$patch")"
  patch -s -p1 -d "$WS/src/$pkg" < "$patch"
done

log "colcon build of ${#PACKAGES[@]} packages in $WS (about 8 minutes on 2 cores; log: $WS/build.log)"
dp_colcon_build "${CMAKE_ARGS[@]}"
# Marks a prefix built against the wheels: its C++ processes need the wheels' library folders and
# libpython (dp_bringup/mock_arm.py, Installation.process_env).
mkdir -p "$PREFIX/share/dp_ros2_control" && touch "$PREFIX/share/dp_ros2_control/built_against_wheels"
touch "$WS/.complete"
ln -sfn "$PREFIX" "$LINK"
# Older prefixes (other keys) are left for other clones; remove them by hand if space matters.
log "built in $(( $(date +%s) - start )) s: $PREFIX"
