#!/bin/sh
# The Docker image's entrypoint: bring the database schema up to date, then run the
# command (gunicorn by default; `docker compose run --rm portal flask --app wsgi ...` for
# the command line). `flask db upgrade` does nothing when the schema is current.
#
# Several replicas starting at once would all migrate at once: there, set
# MIGRATE_ON_START=no on the replicas and run the upgrade once per release instead
# (docs/deploy.md, "Upgrades").
set -eu

if [ "${MIGRATE_ON_START:-yes}" != "no" ]; then
    flask --app wsgi db upgrade
fi
exec "$@"
