"""A peer that died and a new server on its port: the next call reaches the new one."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from fluentfn._call import Call, Outcome
from fluentfn._ioloop import IoLoop
from fluentfn._status import Status
from fluentfn.errors import Unavailable
from fluentfn.transport._client import PeerPool
from fluentfn.transport._server import start_server

pytestmark = pytest.mark.timeout(60)


class Echo:
    """A dispatcher that answers every call with its own arguments."""

    async def dispatch(self, call: Call, *, local: bool = False) -> Outcome | None:
        return Outcome(seq=call.seq, value=call.args)

    def submit(self, call: Call, done: Callable[[Outcome | None], None]) -> None:
        done(Outcome(seq=call.seq, value=call.args))

    async def accept(self, call: Call) -> None:
        return None

    def status(self) -> Status:
        return Status()


def test_a_new_server_on_a_dead_peers_port_is_reached_at_once() -> None:
    io = IoLoop()
    pool = PeerPool("token")
    server, port = io.run(start_server(Echo(), "token"))
    endpoint = f"127.0.0.1:{port}"

    def call() -> Outcome | None:
        request = Call(type_name="T", key="k", method="m", args=b"x", request_id="r")
        return io.run(pool.invoke(endpoint, request), timeout=10)

    try:
        assert call() == Outcome(seq=1, value=b"x")
        io.run(server.stop(0))
        for _ in range(4):  # the peer is gone: each call fails, and gRPC's reconnect backoff grows
            with pytest.raises(Unavailable):
                call()
            time.sleep(0.3)
        server, _ = io.run(start_server(Echo(), "token", port=port))  # a new host, the same port
        reply = call()  # a fresh connection, not the dead peer's backoff
        assert reply is not None and reply.value == b"x"
    finally:
        io.run(server.stop(0))
        io.run(pool.close())
        io.loop.call_soon_threadsafe(io.loop.stop)


class Late(Echo):
    """Answers every call a little later, from the loop (replies wait in the stream's outbox)."""

    def submit(self, call: Call, done: Callable[[Outcome | None], None]) -> None:
        import asyncio

        asyncio.get_running_loop().call_later(0.2, done, Outcome(seq=call.seq, value=call.args))


def test_a_quiesced_server_delivers_every_reply_it_produced_before_it_stops() -> None:
    """What a host does before it is stopped: the replies it produced reach their callers
    (a lost acknowledgement would make its caller send a call that ran again)."""
    import asyncio

    from fluentfn.transport._server import quiesce

    io = IoLoop()
    pool = PeerPool("token")
    server, port = io.run(start_server(Late(), "token"))
    endpoint = f"127.0.0.1:{port}"

    async def main() -> list[Outcome | None]:
        calls = [Call(type_name="T", key="k", method="m", args=bytes([i]), request_id=f"r{i}") for i in range(50)]
        pending = [asyncio.ensure_future(pool.invoke(endpoint, c)) for c in calls]
        await asyncio.sleep(0.1)  # sent and being answered
        await quiesce(server, timeout_s=10)
        return list(await asyncio.gather(*pending))

    try:
        replies = io.run(main(), timeout=30)
        assert sorted(r.value for r in replies if r is not None) == [bytes([i]) for i in range(50)]
    finally:
        io.run(pool.close())
        io.loop.call_soon_threadsafe(io.loop.stop)


def test_a_client_whose_gateway_refuses_connections_times_out_saying_so() -> None:
    # A wrong port is waited for (a gateway may be restarting) up to the call's deadline;
    # the timeout then says what went wrong, not only that nothing answered.
    import socket

    import fluentfn as ff

    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{closed.getsockname()[1]}"
        with ff.Client(endpoint, token="token", timeout_s=1.0) as client:
            for send in (client.call, client.tell):
                with pytest.raises(ff.CallTimeout) as caught:
                    send("T/k", "m")
                assert endpoint in str(caught.value) and "by its deadline" in str(caught.value)
