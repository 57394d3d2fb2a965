# syntax=docker/dockerfile:1
# The portal under gunicorn, as an unprivileged user (docs/deploy.md, "Docker").
#
#   docker build -t member-portal .
#   docker run --env-file .env -e DATABASE_URL=... -p 127.0.0.1:8000:8000 member-portal
#
# Each start runs `flask --app wsgi db upgrade` (deploy/docker-entrypoint.sh), then
# gunicorn with the project's gunicorn.conf.py. compose.yaml adds PostgreSQL and Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PORTAL_INSTANCE_PATH=/var/lib/portal \
    GUNICORN_BIND=0.0.0.0:8000

RUN groupadd --system --gid 10001 portal \
 && useradd --system --uid 10001 --gid portal --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin portal

WORKDIR /app
COPY . .

# The portal with psycopg 3 (its binary wheel: no compiler needed) and the Redis client,
# installed in place: the app runs from /app, next to migrations/ and wsgi.py. An
# in-place install builds no catalogues (setup.py compiles them into wheels only), so
# pybabel compiles the .mo files here; without them the portal would be Japanese only.
# The code stays root's and read-only; only the instance folder belongs to the portal.
RUN pip install -e '.[redis]' \
 && pybabel compile --statistics -d portal/translations \
 && python -m compileall -q portal migrations wsgi.py \
 && install -d -o portal -g portal -m 700 /var/lib/portal

USER portal
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
CMD ["gunicorn", "wsgi:app"]
