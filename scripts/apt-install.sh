#!/usr/bin/env bash
# Installs Debian packages for the ensure-*.sh scripts, which call it when what they need
# is missing: quietly, without recommends, as root (through sudo when not root).
# `apt-get update` runs when there are no package lists or this script has not updated them
# for a day, so on a clean machine several scripts in a row update once. With --no-service NAME the package's system
# service is neither started by the install (policy-rc.d answers 101) nor enabled at boot:
# the tests start their own servers.
# Usage: scripts/apt-install.sh [--no-service NAME] PACKAGE...
set -euo pipefail
SERVICE=
if [ "${1:-}" = "--no-service" ]; then
  SERVICE=$2
  shift 2
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
if [ -n "$SERVICE" ]; then
  # invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; 101 means
  # no. Docker images ship one already; otherwise put one in place for the install only.
  POLICY=/usr/sbin/policy-rc.d
  if [ ! -e "$POLICY" ] && [ ! -L "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
  fi
fi
# The lists' own dates are the archive's, so a stamp says when this script last updated.
STAMP=${TMPDIR:-/tmp}/portal-apt-update.stamp
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null)" ] ||
  [ -z "$(find "$STAMP" -mtime -1 -print 2>/dev/null)" ]; then
  $SUDO apt-get update -qq
  touch "$STAMP"
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
# Nor at boot: on a systemd host the package enables its service.
if [ -n "$SERVICE" ] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --quiet "$SERVICE" || true
fi
