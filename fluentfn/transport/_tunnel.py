"""The gateway's tunnel: a client that reaches only the gateway still sends each call
straight to the host that owns its key, through the gateway, byte for byte.

gRPC's own HTTP CONNECT support (the ``grpc.http_proxy`` channel option) opens a client's
connection to a host through the gateway's tunnel listener; the gateway checks the
request and then only copies bytes, in both directions, on two threads. The call's own
gRPC stream, its token and (with TLS) its encryption run end to end between client and
host, so the gateway's hop costs two thread wake-ups instead of a second gRPC call (a
relay decodes, re-routes and re-encodes every message on its event loop).

The listener is not an open proxy: a tunnel is opened only to an endpoint that
``allowed`` names (the cluster's hosts), and only for a caller that proves it holds the
cluster's token. The proof is a digest of the token (HMAC-SHA256), never the token
itself, since the CONNECT request travels in the clear even where calls use TLS.
Anything else is answered with an HTTP error status and closed: 400 for a malformed
request, 407 without the proof, 403 for an endpoint that is not a host, 502 when the host
does not answer, 503 when the gateway already carries ``limit`` tunnels; beyond
``HANDSHAKES`` connections that have not yet sent their request, more are closed at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("fluentfn.transport")

VIA = " via "
"""How a route through a tunnel is written: ``"<host endpoint> via <tunnel address>"``."""
USER = "fluentfn"
HEAD_LIMIT = 8192  # bytes of a CONNECT request's head, at most
HEAD_TIMEOUT_S = 5.0  # a connection that has not sent its whole head by then is closed
DIAL_TIMEOUT_S = 5.0
LIMIT = 256  # tunnels a gateway carries at once (each is two threads)
HANDSHAKES = 64  # connections not yet past their request at once (each a thread, for HEAD_TIMEOUT_S at most)
_CHUNK = 1 << 16
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def proof(token: str) -> str:
    """What a client sends to open a tunnel: a digest of the cluster's token."""
    return hmac.new(token.encode("utf-8"), b"fluentfn-tunnel-v1", hashlib.sha256).hexdigest()


def through(endpoint: str, via: str) -> str:
    """The route to ``endpoint`` through the tunnel at ``via`` ("host:port")."""
    return f"{endpoint}{VIA}{via}"


def dial(endpoint: str, token: str) -> tuple[str, list[tuple[str, Any]]]:
    """The channel target of a route and the options that send it through its tunnel
    (none for a route that is not tunnelled)."""
    target, sep, via = endpoint.partition(VIA)
    if not sep:
        return endpoint, []
    return target, [("grpc.http_proxy", f"http://{USER}:{proof(token)}@{via}")]


def _split(endpoint: str) -> tuple[str, int] | None:
    """("host", port) of "host:port" or "[v6]:port"; None if it is neither."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class TunnelServer:
    """A gateway's tunnel listener on ``bind`` (an ephemeral port unless ``port``).

    ``allowed(endpoint)`` says whether a tunnel may go to ``endpoint`` (called on the
    listener's threads, so it may block briefly). ``counters`` holds how many tunnels were
    opened and refused, and how many are open now."""

    def __init__(
        self,
        token: str,
        allowed: Callable[[str], bool],
        bind: str = "127.0.0.1",
        port: int = 0,
        limit: int = LIMIT,
    ) -> None:
        self._proof = proof(token)
        self._allowed = allowed
        self._limit = limit
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._handshakes = 0
        self._closed = False
        self.counters = {"tunnels_opened": 0, "tunnels_refused": 0, "tunnels_open": 0}
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self._listener = socket.create_server((bind, port), family=family, backlog=128)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="fluentfn-tunnel", daemon=True).start()

    def close(self) -> None:
        """Stop listening and end every open tunnel."""
        with self._lock:
            self._closed = True
            sockets, self._open = list(self._open), set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # never connected: shutdown has nothing to end; close below stops accept
        self._listener.close()
        for sock in sockets:
            _end(sock)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                busy = self._handshakes >= HANDSHAKES
                if busy:
                    self.counters["tunnels_refused"] += 1
                else:
                    self._handshakes += 1
            if busy:  # a flood of connections that send nothing: no thread for more of them
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="fluentfn-tunnel", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """Check one CONNECT request; open its tunnel or answer why not."""
        upstream = None
        try:
            conn.settimeout(HEAD_TIMEOUT_S)
            try:
                head, rest = _read_head(conn)
            finally:
                with self._lock:
                    self._handshakes -= 1
            if head == b"":  # connected and closed (a client seeing that the port answers)
                conn.close()
                return
            status, target = self._check(head)
            if status == 200:
                status, upstream = self._dial(target)
            if upstream is None:
                with self._lock:
                    self.counters["tunnels_refused"] += 1
                conn.sendall(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Length: 0\r\n\r\n".encode())
                conn.close()
                return
            conn.settimeout(None)
            for sock in (conn, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
        except OSError as exc:  # the client went away, or sent nothing in time
            log.debug("tunnel request not served: %r", exc)
            _end(conn)
            if upstream is not None:
                self._release(upstream)
            return
        _Pair(conn, upstream, self._release).start()

    def _check(self, head: bytes | None) -> tuple[int, str]:
        """The status a request's head earns (200: open it) and its target."""
        if head is None:
            return 400, ""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
            return 400, ""
        target = parts[1]
        if _split(target) is None:
            return 400, ""
        if not self._authorized(lines[1:]):
            return 407, target
        try:
            allowed = self._allowed(target)
        except Exception as exc:  # the cluster's host list could not be read: refuse, say why
            log.warning("tunnel to %s refused: the cluster's hosts could not be read (%r)", target, exc)
            return 503, target
        return (200 if allowed else 403), target

    def _authorized(self, headers: list[str]) -> bool:
        for line in headers:
            name, sep, value = line.partition(":")
            if not sep or name.strip().lower() != "proxy-authorization":
                continue
            scheme, _, encoded = value.strip().partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                user, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return user == USER and hmac.compare_digest(password.encode(), self._proof.encode())
        return False

    def _dial(self, target: str) -> tuple[int, socket.socket | None]:
        """A connection to ``target`` counted as open, or the status that says why none."""
        with self._lock:
            if self._closed or self.counters["tunnels_open"] >= self._limit:
                return 503, None
            self.counters["tunnels_open"] += 1
        where = _split(target)
        assert where is not None
        try:
            upstream = socket.create_connection(where, timeout=DIAL_TIMEOUT_S)
        except OSError as exc:
            log.debug("tunnel to %s: the host did not answer (%r)", target, exc)
            with self._lock:
                self.counters["tunnels_open"] -= 1
            return 502, None
        upstream.settimeout(None)
        with self._lock:
            self.counters["tunnels_opened"] += 1
            self._open.add(upstream)
            if self._closed:
                self._open.discard(upstream)
                self.counters["tunnels_open"] -= 1
                _end(upstream)
                return 503, None
        return 200, upstream

    def _release(self, upstream: socket.socket) -> None:
        """A tunnel ended: its host connection is no longer counted."""
        with self._lock:
            if upstream in self._open:
                self._open.discard(upstream)
                self.counters["tunnels_open"] -= 1
        _end(upstream)


def _read_head(conn: socket.socket) -> tuple[bytes | None, bytes]:
    """The request's head and whatever came after it: an empty head if the peer closed
    without sending anything, None if the head is too long or the peer stopped sending."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            return None, b""
        chunk = conn.recv(4096)
        if not chunk:
            return (b"" if not data else None), b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return (head if len(head) <= HEAD_LIMIT else None), rest


def _end(sock: socket.socket) -> None:
    """Close ``sock``, waking a thread blocked on it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already reset or never connected: closing is all there is left to do
    sock.close()


class _Pair:
    """One tunnel: two threads copy bytes, one each way; when one way ends (the peer
    closed or reset it), both sockets close, which ends the other way too."""

    def __init__(self, client: socket.socket, host: socket.socket, release: Callable[[socket.socket], None]) -> None:
        self._client = client
        self._host = host
        self._release = release
        self._ended = threading.Event()

    def start(self) -> None:
        back = threading.Thread(target=self._copy, args=(self._host, self._client), name="fluentfn-tunnel", daemon=True)
        back.start()
        self._copy(self._client, self._host)

    def _copy(self, src: socket.socket, dst: socket.socket) -> None:
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        try:
            while True:
                n = src.recv_into(buffer)
                if not n:
                    break
                dst.sendall(view[:n])
        except OSError as exc:  # reset, or closed by the other way's end
            log.debug("tunnel copy ended: %r", exc)
        if not self._ended.is_set():
            self._ended.set()
            _end(self._client)
            self._release(self._host)
