"""Reply records (what a retry is answered from): codec-encoded ``Outcome``s of their own
format, not protobuf bytes, and the older (protobuf) formats still read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluentfn as ff
from fluentfn._call import ErrorInfo, Outcome
from fluentfn.wire._gen import actorhost_pb2 as pb

pytestmark = pytest.mark.timeout(60)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64).map(lambda v: Outcome(v)),
        st.builds(
            lambda code, msg, mod, typ, args, tb: Outcome(error=ErrorInfo(code, msg, mod, typ, args, tb)),
            st.integers(0, 16),
            st.text(max_size=40),
            st.text(max_size=20),
            st.text(max_size=20),
            st.binary(max_size=20),
            st.text(max_size=40),
        ),
    ),
    st.sampled_from([b"", bytes(range(16))]),
)
def test_a_reply_record_reads_back_as_the_reply_it_was_made_of(reply: Outcome, digest: bytes) -> None:
    from fluentfn.host._turn import replay_of
    from fluentfn.wire.records import record_of

    record = record_of(reply, digest)
    assert record[:1] == b"\x02", "a record of its own format, not protobuf bytes"
    assert replay_of(record, digest, "r") == reply
    assert replay_of(record, b"", "r") == reply


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=12))
def test_the_record_of_a_short_value_is_made_once_and_shared(value: bytes) -> None:
    import msgpack

    from fluentfn.wire.records import record_of

    first, again = record_of(Outcome(value)), record_of(Outcome(bytes(bytearray(value))))
    assert first == again == b"\x02" + msgpack.packb([b"", value, None], use_bin_type=True)
    assert (first is again) == (len(value) <= 8)  # shared: None, bools, small ints
    assert record_of(Outcome(value), bytes(range(16))) != first  # a bound record is its own


def test_records_written_before_as_protobuf_still_read_and_a_reused_key_is_refused() -> None:
    from fluentfn.host._turn import replay_of, request_digest
    from fluentfn.wire.records import record_of

    old = pb.Reply(value=b"\x05")
    reply = Outcome(b"\x05")
    assert replay_of(old.SerializeToString(), b"", "r") == reply  # the first format: Reply bytes
    bound = request_digest("key:abc", "add", b"\x01")
    assert replay_of(b"\x01" + bound + old.SerializeToString(), bound, "key:abc") == reply  # the second
    err = pb.Reply(error=pb.Error(code=0, message="m", exc_module="builtins", exc_type="ValueError"))
    assert replay_of(err.SerializeToString(), b"", "r") == Outcome(error=ErrorInfo(0, "m", "builtins", "ValueError"))
    other = request_digest("key:abc", "add", b"\x02")
    for record in (b"\x01" + bound + old.SerializeToString(), record_of(reply, bound)):
        with pytest.raises(ff.InvalidRequest, match="idempotency"):
            replay_of(record, other, "key:abc")
