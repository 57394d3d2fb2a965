"""The Docker image's HEALTHCHECK: GET /healthz from inside the container, on the port
gunicorn listens on (GUNICORN_BIND, as gunicorn.conf.py reads it). Exit status 0 when
the portal answers 200 (database and Redis reachable), 1 otherwise.

python:3.11-slim has no curl; the standard library is enough.
"""

import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 4  # seconds; the HEALTHCHECK's own timeout is 5


def main() -> int:
    bind = os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"
    port = bind.rsplit(":", 1)[-1]
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # noqa: S310 - fixed http URL
            print(answer.read().decode())
            return 0 if answer.status == 200 else 1
    except urllib.error.HTTPError as answer:  # 503: the body names the part that failed
        print(answer.read().decode())
        return 1
    except OSError as exc:  # nothing listens, or no answer in time
        print(f"{url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
