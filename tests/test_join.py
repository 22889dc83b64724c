"""Joining a running Ray: an address where nothing listens is refused at once, not after
Ray's minutes of GCS retries."""

from __future__ import annotations

import socket
import time

import pytest

from fluentfn.errors import FluentError
from fluentfn.runtime._raystart import _check_listening, join_ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_address_where_nothing_listens_is_refused_at_once() -> None:
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(FluentError, match=f"127.0.0.1:{port}: nothing answers there"):
        join_ray(f"127.0.0.1:{port}", "ns", 30)
    assert time.monotonic() - started < 60  # Ray alone would retry for minutes


def test_a_listening_address_and_rays_own_forms_pass_the_check() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        _check_listening(f"127.0.0.1:{server.getsockname()[1]}")
    for address in ("auto", "ray://127.0.0.1:1", "localhost"):
        _check_listening(address)  # Ray resolves these itself
