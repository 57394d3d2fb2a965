"""A real redis-server for tests, on a UNIX socket of its own (not a test module).

Import the fixture into a test module with
``from redis_server import redis_server  # noqa: F401``; with pytest's default "prepend"
import mode the folder of ``tests/conftest.py`` is on ``sys.path``.

The server is Debian's ``redis-server`` (``scripts/ensure-redis.sh`` installs it; ``make
test`` runs that script). It listens on no TCP port, only on ``redis.sock`` in a
temporary folder, keeps nothing on disk, and is started once per test session.
``redis_server.url`` is what to put in ``REDIS_URL`` (``unix:///…/redis.sock``);
``redis_server.flushall()`` empties it between tests; ``redis_server.client()`` gives a
``redis.Redis`` on it. When ``redis-server`` is missing the fixture fails (it does not
skip): CI must prove that the limits are shared.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# sun_path holds 108 bytes; pytest's temporary folders can be deeper than that allows.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class RedisServer:
    socket_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=5,
            socket_connect_timeout=5,
            decode_responses=True,
        )

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _answers(server: RedisServer) -> bool:
    try:
        with redis.Redis(
            unix_socket_path=str(server.socket_path), socket_timeout=1, socket_connect_timeout=1
        ) as client:
            return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: redis-server shuts down (nothing to save)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(
            "redis-server is not installed: run scripts/ensure-redis.sh "
            "(`make test` does) to install Debian's redis-server package",
            pytrace=False,
        )
    folder = tmp_path_factory.mktemp("redis")
    if len(str(folder / "redis.sock")) > MAX_SOCKET_PATH:
        folder = Path(tempfile.mkdtemp(prefix="portal-redis-", dir="/tmp"))
    server = RedisServer(socket_path=folder / "redis.sock", log_path=folder / "redis.log")
    command = [
        executable,
        "--port", "0",  # no TCP listener at all
        "--unixsocket", str(server.socket_path),
        "--unixsocketperm", "700",
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", "",  # stdout, i.e. redis.log
    ]  # fmt: skip
    with server.log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=folder, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(server):
            if proc.poll() is not None:
                pytest.fail(
                    f"redis-server exited with status {proc.returncode} during start-up\n"
                    f"{server.log()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"redis-server did not answer PING within {START_TIMEOUT:.0f} s\n"
                    f"{server.log()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        yield server
    finally:
        _stop(proc)
