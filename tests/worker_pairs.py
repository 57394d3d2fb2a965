"""Two requests served by the two workers of a real gunicorn, one each (not a test
module).

Which worker accepts a connection is normally up to the kernel, so this decides it: both
requests are sent without their final blank line. A sync worker (``threads=1``) serves
one connection at a time and waits for the rest of the request, so once the first
connection has been accepted the second can only be accepted by the other worker; the
helper waits (bounded) until both are, checks in /proc that two different processes hold
them, then completes both.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from dataclasses import dataclass

TIMEOUT = 20  # seconds, for every wait below


@dataclass(frozen=True)
class Attempt:
    pid: int  # the gunicorn worker that served it
    status: int
    headers: http.client.HTTPMessage
    text: str


def _tcp_entries() -> list[list[str]]:
    with open("/proc/net/tcp") as table:
        return [line.split() for line in table.readlines()[1:]]


def _server_side_inode(server_port: int, client_port: int) -> int:
    """The inode of the server's end of a connection once a process has accepted it;
    0 while it waits in the listener's queue (it has no socket file yet)."""
    for fields in _tcp_entries():
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        established = fields[3] == "01"
        if established and local_port == server_port and remote_port == client_port:
            return int(fields[9])
    return 0


def _owner(inode: int) -> int:
    """The pid of the process holding the socket with this inode."""
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                return int(pid)
        except OSError:  # the process or descriptor went away
            continue
    raise AssertionError(f"no process holds socket {inode}")


def _wait_accepted(server_port: int, conn: socket.socket) -> int:
    """Wait until a worker has accepted ``conn``; its pid."""
    client_port = conn.getsockname()[1]
    deadline = time.monotonic() + TIMEOUT
    while (inode := _server_side_inode(server_port, client_port)) == 0:
        assert time.monotonic() < deadline, "no free worker accepted the connection"
        time.sleep(0.01)
    return _owner(inode)


def _read_response(conn: socket.socket, pid: int) -> Attempt:
    response = http.client.HTTPResponse(conn)
    try:
        response.begin()
        body = response.read().decode()
    finally:
        response.close()
    return Attempt(pid, response.status, response.headers, body)


def request_pair(server, head: bytes, rest: bytes) -> list[Attempt]:
    """Send ``head`` (the request without its final blank line) on two connections,
    make sure two different workers hold them, then send ``rest``; the two answers."""
    conns = []
    try:
        pids = []
        for _ in range(2):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            conns.append(conn)
            conn.sendall(head)  # the worker that accepts it now waits for the rest
            pids.append(_wait_accepted(server.port, conn))
        assert pids[0] != pids[1], f"both connections held by worker {pids[0]}"
        attempts = []
        for conn, pid in zip(conns, pids, strict=True):
            conn.sendall(rest)
            attempts.append(_read_response(conn, pid))
        return attempts
    finally:
        for conn in conns:
            conn.close()
