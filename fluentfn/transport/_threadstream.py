"""A calling thread's own stream to a host: a blocking call sent and answered in the
thread that makes it, with no hand-off to the I/O loop and back.

The loop's ``PeerStream`` costs a blocked caller two thread hand-offs a call (to the loop
to write, back from it with the reply), each a scheduler quantum on a busy machine.
gRPC's synchronous API would cost as many: it runs a bidirectional stream on helper
threads. Its single-threaded form (the "segregated" call behind
``SingleThreadedUnaryStream``) gives a call a completion queue of its own that the
calling thread drives; ``ThreadStream`` runs ``InvokeStream`` that way. Same protocol,
server, authentication and channel options as ``PeerStream``; one stream per (thread,
endpoint), one channel (connection) per endpoint shared by the threads.

That form is gRPC's internal API (``grpc._cython.cygrpc``): ``available()`` says whether
this grpcio has it, and callers fall back to the loop's stream where it does not.

A stream carries one call at a time (its thread blocks on it), so a reply is always the
one awaited. A call past its deadline (and a grace) is cancelled by a watchdog thread
that polls the streams' deadlines; its caller gets ``CallTimeout``, as a blocked caller of
the loop's stream does.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import weakref
from typing import Any

import grpc

from .._call import Call, Outcome
from .._config import thread_streams_wanted
from ..errors import FluentError, NotDelivered, Unavailable, error_for
from ..wire._gen import actorhost_pb2 as pb
from ._auth import metadata
from ._client import _undelivered, channel_args, no_reply, until_deadline
from ._convert import call_to_pb, outcome_from_pb
from ._server import ACCEPTED
from ._tls import TlsConfig

log = logging.getLogger("fluentfn")

try:  # gRPC's internal API: present in grpcio 1.2x-1.8x, not promised
    _cy: Any = importlib.import_module("grpc._cython.cygrpc")
    _OPS: Any = _cy.OperationType
    _CODES: dict[Any, grpc.StatusCode] = importlib.import_module("grpc._common").CYGRPC_STATUS_CODE_TO_STATUS_CODE
    _FLAGS = _cy.PropagationConstants.GRPC_PROPAGATE_DEFAULTS
    _AVAILABLE = hasattr(_cy.Channel, "segregated_call") and hasattr(_cy, "SegregatedCall")
except Exception:  # an older or newer grpcio: the loop's stream serves every call
    _AVAILABLE = False

_METHOD = b"/fluentfn.v1.ActorHost/InvokeStream"
_ACCEPTED = tuple(ACCEPTED)
WATCH_PERIOD_S = 0.05  # how often the watchdog looks for overdue calls
PER_ENDPOINT = 128
"""Thread streams a process keeps open to one endpoint at most; a thread beyond them sends
by the loop. They share one connection, on which a host serves ``MAX_STREAMS`` (256) streams
at most: a stream beyond that would wait for one of them to end, and a thread's stream
ends only with its thread."""


def available() -> bool:
    """Whether this grpcio can run a stream from the calling thread."""
    return _AVAILABLE


def thread_streams(token: str, tls: TlsConfig | None) -> ThreadStreams | None:
    """Blocked callers' own streams for a process's router, where this grpcio has them and
    ``FLUENTFN_THREAD_STREAMS`` does not turn them off (None: every call goes by the loop)."""
    return ThreadStreams(token, tls) if _AVAILABLE and thread_streams_wanted() else None


class ThreadStream:
    """One thread's stream to one endpoint (used by that thread only)."""

    __slots__ = ("__weakref__", "_call", "_lock", "_seq", "accepted", "broken", "due", "endpoint", "overdue")

    def __init__(self, channel: grpc.Channel, endpoint: str, token: str) -> None:
        self.endpoint = endpoint
        self.accepted = False  # the host took the stream: a call on it may have reached the host
        self.broken = False
        self.due = 0.0  # monotonic deadline of the call in flight (0: none); the watchdog reads it
        self.overdue = False  # the watchdog cancelled the stream: its call is past its deadline
        self._lock = threading.Lock()  # ``due`` and the watchdog's cancel: never a later call's
        self._seq = 0
        md = metadata(token)
        ops = (
            ((_cy.SendInitialMetadataOperation(md, 0),), None),
            ((_cy.ReceiveInitialMetadataOperation(0),), None),
            ((_cy.ReceiveStatusOnClientOperation(0),), None),
        )
        raw = channel._channel  # type: ignore[attr-defined]  # the cygrpc channel under grpc.Channel
        self._call = raw.segregated_call(_FLAGS, _METHOD, None, None, md, None, ops, None, None)

    def invoke(self, call: Call) -> tuple[Outcome | None, FluentError | None]:
        """Send ``call`` and wait for its reply in this thread: (reply, None) or (None, error).
        An error other than ``CallTimeout`` means the stream broke (``NotDelivered`` if the
        host never took it); the stream is then ``broken``."""
        self._seq += 1
        call.seq = self._seq
        data = pb.CallBatch(calls=[call_to_pb(call)]).SerializeToString()
        with self._lock:
            self.due = time.monotonic() + until_deadline(call)
        try:
            return self._round_trip(call, data)
        except Exception as exc:  # gRPC refused the operation (a channel closed under it, ...)
            self.broken = True
            error = Unavailable(f"{self.endpoint}: {exc}")
            return None, error if self.accepted else _undelivered(error)
        finally:
            with self._lock:
                self.due = 0.0
                if self.overdue:  # cancelled as its reply came: the stream is gone either way
                    self.broken = True

    def _round_trip(self, call: Call, data: bytes) -> tuple[Outcome | None, FluentError | None]:
        # one batch: the message out and the reply in, one completion to wait for
        if not self._call.operate((_cy.SendMessageOperation(data, 0), _cy.ReceiveMessageOperation(0)), None):
            return None, self._ended(call)
        got: bytes | None = None
        receiving = True
        while receiving:
            for op in self._call.next_event().batch_operations:
                kind = op.type()
                if kind == _OPS.receive_message:
                    receiving = False
                    got = op.message()
                elif kind == _OPS.receive_initial_metadata:
                    self._took(op)
                elif kind == _OPS.receive_status_on_client:
                    return None, self._failed(call, op.code(), op.details())
        if got is None:  # the host ended the stream: its status comes next
            return None, self._ended(call)
        for reply in pb.ReplyBatch.FromString(got).replies:
            if reply.seq == call.seq:
                return outcome_from_pb(reply), None
        self.broken = True
        return None, FluentError(f"{self.endpoint}: answered a call it was not sent on this stream")

    def _took(self, op: Any) -> None:
        self.accepted = _ACCEPTED in {tuple(m) for m in op.initial_metadata()}

    def cancel_if_overdue(self, now: float) -> None:
        """Called by the watchdog: if the call in flight is past ``due``, end the stream
        (its blocked caller gets ``CallTimeout``)."""
        with self._lock:
            if not self.due or self.due >= now or self.overdue:
                return
            self.overdue = True
            self._call.cancel(_cy.StatusCode.cancelled, "the call is past its deadline")

    def close(self) -> None:
        """End the stream (its thread is done with it) and take its last events, so that
        gRPC frees the call and its completion queue."""
        if self.broken:
            return
        self.broken = True
        try:
            self._call.cancel(_cy.StatusCode.cancelled, "closed")
            while not any(
                op.type() == _OPS.receive_status_on_client for op in self._call.next_event().batch_operations
            ):
                pass
        except Exception as exc:  # the channel went first: nothing left to free
            log.debug("closing a thread stream to %s: %r", self.endpoint, exc)

    def __del__(self) -> None:  # its thread ended (thread-locals go with it)
        self.close()

    def _ended(self, call: Call) -> FluentError:
        """The stream ended under ``call``: read its status."""
        while True:
            for op in self._call.next_event().batch_operations:
                kind = op.type()
                if kind == _OPS.receive_initial_metadata:
                    self._took(op)
                elif kind == _OPS.receive_status_on_client:
                    return self._failed(call, op.code(), op.details())

    def _failed(self, call: Call, code: Any, details: Any) -> FluentError:
        self.broken = True
        if self.overdue:
            return no_reply(call)
        status = _CODES.get(code, grpc.StatusCode.UNKNOWN)
        text = details.decode(errors="replace") if isinstance(details, bytes) else str(details)
        if status == grpc.StatusCode.OK:
            error: FluentError = Unavailable(f"{self.endpoint}: stream closed by peer")
        else:
            error = error_for(status, f"{self.endpoint}: {text}")
        return error if self.accepted else _undelivered(error)


class ThreadStreams:
    """Each thread's streams, by endpoint, over one channel per endpoint."""

    def __init__(self, token: str, tls: TlsConfig | None) -> None:
        self._token = token
        self._tls = tls
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._mine = threading.local()
        self._all: weakref.WeakSet[ThreadStream] = weakref.WeakSet()
        self._watchdog: threading.Thread | None = None
        self._closed = False
        self._unusable = False  # set once if gRPC's internal API turns out to differ

    def stream(self, endpoint: str) -> ThreadStream | None:
        """This thread's stream to ``endpoint`` (a new one after a break); None if the
        process has ``PER_ENDPOINT`` open to it already."""
        mine: dict[str, ThreadStream] | None = getattr(self._mine, "streams", None)
        if mine is None:
            mine = self._mine.streams = {}
        stream = mine.get(endpoint)
        if stream is None or stream.broken:
            replacing = stream is not None and not stream.accepted
            mine.pop(endpoint, None)
            stream = self._open(endpoint, replacing=replacing)
            if stream is not None:
                mine[endpoint] = stream
        return stream

    def invoke(self, endpoint: str, call: Call) -> tuple[Outcome | None, FluentError | None] | None:
        """``call`` on this thread's stream to ``endpoint``: (reply, None) or (None, error);
        None, with nothing sent, if the thread may not have a stream of its own."""
        if self._unusable:
            return None
        try:
            stream = self.stream(endpoint)
        except FluentError as exc:
            return None, exc
        except (TypeError, AttributeError) as exc:  # this grpcio's internal API is not the one we know
            self._unusable = True
            log.warning("blocking calls go through the event loop: gRPC's single-threaded call API differs (%r)", exc)
            return None
        except Exception as exc:  # gRPC would not start the stream (a channel closing under it, ...)
            return None, NotDelivered(f"{endpoint}: {exc}")
        return None if stream is None else stream.invoke(call)

    def _open(self, endpoint: str, *, replacing: bool) -> ThreadStream | None:
        with self._lock:
            if self._closed:
                raise Unavailable(f"{endpoint}: this process closed its connection to the cluster")
            if sum(1 for s in self._all if s.endpoint == endpoint and not s.broken) >= PER_ENDPOINT:
                return None
            channel = self._channels.get(endpoint)
            if channel is not None and replacing:  # never reached the host: maybe it died; dial anew
                channel.close()
                channel = None
            if channel is None:
                channel = self._channels[endpoint] = self._dial(endpoint)
            stream = ThreadStream(channel, endpoint, self._token)
            self._all.add(stream)
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="fluentfn-deadlines", daemon=True)
                self._watchdog.start()
            return stream

    def _dial(self, endpoint: str) -> grpc.Channel:
        target, options = channel_args(endpoint, self._tls, self._token)
        if self._tls is None:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, self._tls.channel_credentials(), options=options)

    def _watch(self) -> None:
        """Cancel the streams whose call is past its deadline (and the grace)."""
        while not self._closed:
            time.sleep(WATCH_PERIOD_S)
            self._cancel_overdue(time.monotonic())

    def _cancel_overdue(self, now: float) -> None:
        """One look at the streams (a function of its own: the list of them, strong
        references, must not outlive the look, or a thread's stream would outlive its
        thread until the next look and be closed by the watchdog)."""
        with self._lock:
            streams = list(self._all)
        for stream in streams:
            if stream.due:
                stream.cancel_if_overdue(now)

    def close(self) -> None:
        """Close every channel: streams still in use end with ``Unavailable``."""
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()
