#!/usr/bin/env bash
# The shared rate-limit tests start their own redis-server on a unix socket (tests/redis_server.py):
# install Debian's redis-server when it is missing, without starting its system service.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "Installing Debian's redis-server for the rate-limit tests (its service is not started)..."
# invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; 101 means no.
# Docker images ship one already; otherwise put one in place for the install only.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ] && [ ! -L "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# Nor at boot: on a systemd host the package enables its service.
if [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --quiet redis-server.service || true
fi
