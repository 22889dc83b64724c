"""Starting private redis-server processes for tests (plain, with a password, over TLS)."""

from __future__ import annotations

import socket
import subprocess

from fluentfn.testing import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def start_redis(args: list[str], port: int, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """``redis-server *args``, returned once ``port`` accepts connections (else it is
    killed and AssertionError says so)."""
    proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _accepts(port), timeout=timeout, interval=0.05)
    except AssertionError:
        proc.kill()
        raise AssertionError("redis-server did not start") from None
    return proc
