# Shared by build.sh and launch.sh (sourced): the source workspace of a colcon build from the
# archives in $SRC. Needs log(), SRC, WS, PACKAGES (<archive>/<path inside the archive>).

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
