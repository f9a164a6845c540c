#!/usr/bin/env bash
# A headless Chromium for the report test (dp_eval.browser: every image and video of report.html
# loads in a real browser). Called by `make test`; quiet when a Chromium is already there.
# Installs Debian's `chromium` package with apt-get where that is possible (root, apt-get present);
# otherwise says so, and the browser test skips with the same message.
set -uo pipefail
log() { echo "[browser] $*"; }
for b in chromium chromium-browser google-chrome google-chrome-stable; do
  command -v "$b" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "no Chromium and no way to install it here (needs root and apt-get): the report's browser test will skip"
  exit 0
fi
log "apt-get install chromium (once; ~1 min)"
apt-get update -qq >/dev/null 2>&1 || true      # stale lists: the install below says so
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    >/tmp/dp_ros_chromium_apt.log 2>&1; then
  log "apt-get install chromium failed (see /tmp/dp_ros_chromium_apt.log): the report's browser test will skip"
fi
exit 0
