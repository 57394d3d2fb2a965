"""gunicorn settings for the portal (docs/deploy.md).

gunicorn reads this file from the folder it starts in: ``make run``, the test servers,
the Docker image and the systemd unit all start in the project folder (elsewhere, pass
``--config /path/to/gunicorn.conf.py``). Each setting below can be changed with the
environment variable named beside it; a command-line flag wins over both (``make run``
and the test servers pass their own bind, workers and threads).

Always, whatever the flags: the access log leaves out password-reset tokens and names
each request's id (``portal/access_log.py``), and ``PORTAL_LOG_FORMAT=json`` turns
gunicorn's lines into JSON like the application's.
"""

import math
import os


def _number(names: tuple[str, ...], default: int) -> int:
    """The first of these variables that is set, as a whole number; else the default."""
    for name in names:
        raw = os.environ.get(name, "").strip()
        if raw:
            try:
                return int(raw)
            except ValueError:
                raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None
    return default


def cpu_count() -> int:
    """The CPUs this process may use: its affinity mask (``taskset``, a container's
    ``--cpuset-cpus``), lowered to a cgroup v2 quota (``docker run --cpus``,
    systemd's ``CPUQuota=``) when there is one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as limit:
            quota, period = limit.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


# --- where it listens ------------------------------------------------------------------

# Loopback by default: only a proxy on the same host reaches gunicorn (SECURITY.md, "No
# direct access"). In a container, bind 0.0.0.0:8000 and publish the port to the proxy
# only (the Dockerfile does).
bind = os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"

# --- workers and threads ------------------------------------------------------------------

# Processes: 2 per CPU + 1, at most 12 (WEB_CONCURRENCY is the name platforms such as
# Heroku set; GUNICORN_WORKERS is ours). Every sign-in costs one argon2id hash (about
# 0.1 s of CPU and 64 MiB with argon2-cffi's defaults), the rest of a request is short,
# so CPUs, not workers, bound the sign-ins per second; more workers only queue hashes.
# Each worker holds its own database pool and rate-limit connection; several workers or
# hosts need REDIS_URL so that rate limits are shared.
MAX_WORKERS = 12
workers = _number(("WEB_CONCURRENCY", "GUNICORN_WORKERS"), min(2 * cpu_count() + 1, MAX_WORKERS))

# Threads per worker. With threads > 1 gunicorn runs its threaded worker, gthread
# (gunicorn turns the "sync" class into gthread whenever threads > 1; naming the class
# here would keep it threaded under `--threads 1` too, which the tests' single-threaded
# workers need). A thread waits on the database, Redis, SMTP or a long CSV export while
# the others serve; argon2 releases the GIL while it hashes.
threads = _number(("GUNICORN_THREADS",), 4)

# --- timeouts -----------------------------------------------------------------------------

# gthread workers send their heartbeat from the main thread, so `timeout` only kills a
# worker that is stuck as a whole, never a long request (a CSV export of a million
# members takes about 45 s; bench/README.md). A sync worker would be killed after it.
timeout = _number(("GUNICORN_TIMEOUT",), 30)
# On SIGTERM/SIGHUP (stop, restart, reload), requests in flight get this long to finish.
graceful_timeout = _number(("GUNICORN_GRACEFUL_TIMEOUT",), 30)
# Seconds an idle keep-alive connection stays open. Behind a load balancer that reuses
# connections, set it above the balancer's idle timeout (e.g. 75 behind an AWS ALB's 60),
# so the balancer never sends a request on a connection gunicorn is just closing.
keepalive = _number(("GUNICORN_KEEPALIVE",), 5)

# --- proxies ------------------------------------------------------------------------------

# Two settings, two jobs; keep them in step:
#
# - PORTAL_PROXY_COUNT (the portal's own, portal/__init__.py): how many proxies in front
#   to trust for X-Forwarded-For and X-Forwarded-Proto (werkzeug's ProxyFix, counting
#   hops from the right). It decides the client address that rate limits, the audit log
#   and the trusted-network rule see, and the scheme of generated URLs. This is the one
#   that matters.
# - forwarded_allow_ips (gunicorn's): the peer addresses whose X-Forwarded-Proto gunicorn
#   itself believes when it sets wsgi.url_scheme. gunicorn never takes the client address
#   from X-Forwarded-For (the access log's first field is the proxy's address).
#
# So gunicorn trusts nobody's headers when the portal trusts no proxy (PORTAL_PROXY_COUNT
# unset or 0: a client reaching gunicorn directly cannot claim https), and with proxies
# it trusts a proxy on this host (gunicorn's own default). A proxy elsewhere (another
# container, a load balancer) needs its address here: FORWARDED_ALLOW_IPS=10.0.0.5, or
# "*" when nothing but the proxy can reach gunicorn at all.
try:
    _proxies = int(os.environ.get("PORTAL_PROXY_COUNT", "0").strip() or "0")
except ValueError:
    _proxies = 0  # the portal refuses to start and names the variable
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1" if _proxies > 0 else "")

# --- logs ---------------------------------------------------------------------------------

# Access log to stdout, gunicorn's own messages to stderr (journald and Docker keep both).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Apache's combined format, then the time taken and the request's id: the X-Request-ID
# the portal answers with (portal/web/request_id.py), which its own log lines name too.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms '
    "request_id=%({x-request-id}o)s"
)
# Redacts reset tokens; PORTAL_LOG_FORMAT=json writes one JSON object per line.
logger_class = "portal.access_log.RedactingLogger"
