#!/usr/bin/env bash
# The shared rate-limit tests start their own redis-server on a unix socket (tests/redis_server.py):
# install Debian's redis-server when it is missing, without starting its system service.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "Installing Debian's redis-server for the rate-limit tests (its service is not started)..."
exec "$(dirname "$0")/apt-install.sh" --no-service redis-server.service redis-server
