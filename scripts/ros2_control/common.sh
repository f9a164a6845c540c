# Shared by build.sh and launch.sh, sourced from the repository root with the script's arguments:
#   . scripts/ros2_control/common.sh "$@"
# Sets ROOT, HERE and IF_BUILT (--if-built: `make test` links a build that exists, never builds).
# The functions below need log() and, as they say, SRC, WS (the cache folder of one build key; the
# prefix is $WS/install), LINK (the clone's link to the prefix), VENV, PACKAGES.
ROOT=$PWD
HERE=$ROOT/scripts/ros2_control
IF_BUILT=0
[ "${1:-}" = --if-built ] && IF_BUILT=1

# pip-install a requirements file into the venv unless this version of it already was.
dp_pip_requirements() {   # <requirements file> <marker name>
  local hash marker=$VENV/.$2
  hash=$(sha256sum "$1" | cut -c1-16)
  [ "$(cat "$marker" 2>/dev/null)" = "$hash" ] && return 0
  log "installing $(basename "$1") into .venv"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$1" \
      > "$marker.pip.log" 2>&1; then
    grep -v "^WARNING: Location" "$marker.pip.log" | tail -20
    log "pip install of $1 failed"
    exit 1
  fi
  echo "$hash" > "$marker"
}

# A complete build of this key: link it and exit. Else with --if-built: unlink, say why, exit.
dp_use_built() {   # <message when not built>
  if [ -f "$WS/.complete" ]; then
    ln -sfn "$WS/install" "$LINK"
    log "up to date: $WS/install"
    exit 0
  fi
  if [ "$IF_BUILT" = 1 ]; then
    rm -f "$LINK"
    log "$1"
    exit 0
  fi
}

# One build of a key at a time (two clones, or CI beside a developer): wait for the lock; a build
# that another process finished meanwhile is linked and the script exits.
dp_lock_build() {
  mkdir -p "$(dirname "$WS")"
  exec 9> "$WS.lock"
  flock 9
  if [ -f "$WS/.complete" ]; then
    ln -sfn "$WS/install" "$LINK"
    log "built meanwhile by another process: $WS/install"
    exit 0
  fi
}

# colcon build of $WS/src into $WS/install against the venv's ROS 2 wheels (log: $WS/build.log);
# the arguments are CMake's. Build folders are removed, installed scripts made portable.
dp_colcon_build() {   # <cmake args...>
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
  export CMAKE_PREFIX_PATH=$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  if ! (cd "$WS" && colcon build --merge-install --event-handlers console_cohesion- summary+ \
          --cmake-args "$@" > "$WS/build.log" 2>&1); then
    grep -E "error|Error|Failed|failed" "$WS/build.log" | head -40
    log "colcon build failed: $WS/build.log"
    exit 1
  fi
  rm -rf "$WS/build" "$WS/log"
  dp_portable_shebangs "$WS/install" "$VENV"
}

# The source workspace of a colcon build from the archives in $SRC (PACKAGES: <archive>/<path
# inside the archive>).

# Extract the archives the PACKAGES need and copy each package into $WS/src/<package name>.
# Each archive holds one top folder (the repository's name).
dp_source_workspace() {
  local a p sub top name
  rm -rf "$WS"
  mkdir -p "$WS/src" "$WS/archives"
  for a in $(printf '%s\n' "${PACKAGES[@]}" | cut -d/ -f1 | sort -u); do
    mkdir -p "$WS/archives/$a"
    tar xzf "$SRC/$a.tar.gz" -C "$WS/archives/$a"
  done
  for p in "${PACKAGES[@]}"; do
    a=${p%%/*}; sub=${p#*/}
    top=$(find "$WS/archives/$a" -mindepth 1 -maxdepth 1 -type d | head -1)
    name=$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$top/$sub/package.xml" | head -1)
    cp -a "$top/$sub" "$WS/src/$name"
  done
  rm -rf "$WS/archives"
}

# Installed Python scripts (ros2, spawner, ...) name the building clone's venv interpreter; any
# clone on the machine uses the prefix, so they run the python3 on PATH (the sourced venv's).
dp_portable_shebangs() {   # <prefix> <venv>
  grep -rlI --exclude-dir=site-packages "^#!$2/bin/python" "$1/bin" "$1/lib" 2>/dev/null \
    | xargs -r sed -i "1s|^#!$2/bin/python[0-9.]*|#!/usr/bin/env python3|"
}
