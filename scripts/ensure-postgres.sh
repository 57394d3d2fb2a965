#!/usr/bin/env bash
# The suite's PostgreSQL pass starts its own server in a temporary data directory
# (tests/postgres_server.py): install Debian's postgresql when its initdb is missing,
# without starting or enabling its system service or creating its default cluster.
set -euo pipefail
if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "Installing Debian's postgresql for the tests' PostgreSQL pass (its service is not started)..."
# The package would create a "main" cluster (and start it, were that allowed); the tests
# make their own, so the package is told not to, for this install only.
CONF=/etc/postgresql-common/createcluster.d/portal-tests.conf
$SUDO mkdir -p "$(dirname "$CONF")"
echo 'create_main_cluster = false' | $SUDO tee "$CONF" >/dev/null
trap '$SUDO rm -f "$CONF"' EXIT
"$(dirname "$0")/apt-install.sh" --no-service postgresql.service postgresql
