"""Work done after the answer, on a thread of its own.

For requests whose time must not depend on what they find (パスワードをお忘れの方: a
known ID would otherwise take longer than an unknown one, by a database write and a
mail). ``Response.call_on_close`` is not enough: it runs on the request's own thread
before the connection is handed back, so a pipelined request or the close still shows
the delay. Jobs are lost if the worker process stops first; the member simply asks again.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from flask import current_app

from ..extensions import db

_executor = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="portal-bg")
_pending: set[concurrent.futures.Future] = set()
_lock = threading.Lock()


def run_later(job: Callable[..., Any], *args: Any) -> None:
    """Run ``job(*args)`` in an application context on a background thread."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run() -> None:
        with app.app_context():
            try:
                job(*args)
            except Exception:  # noqa: BLE001 - logged; nobody is waiting for it
                app.logger.exception("background job %s failed", job.__name__)
            finally:
                db.session.remove()

    future = _executor.submit(run)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: concurrent.futures.Future) -> None:
    with _lock:
        _pending.discard(future)


def wait_idle(timeout: float = 10.0) -> None:
    """Until every job submitted so far has finished (tests, and a clean shutdown)."""
    with _lock:
        running = list(_pending)
    concurrent.futures.wait(running, timeout=timeout)
