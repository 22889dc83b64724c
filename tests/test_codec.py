"""The wire codec: round trips, and clean errors for anything malformed."""

from __future__ import annotations

import enum
import pickle

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluentfn import ActorRef
from fluentfn.errors import InvalidRequest
from fluentfn.wire import codec

keys = st.text(min_size=1, max_size=20)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.builds(lambda k: ActorRef("Counter", k), keys)
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
        | st.frozensets(st.integers(min_value=-(2**63), max_value=2**63), max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: object) -> None:
    assert codec.decode(codec.encode(value)) == value


@given(values)
def test_round_trip_keeps_container_types(value: object) -> None:
    back = codec.decode(codec.encode(value))
    assert type(back) is type(value)


def test_numpy_round_trip() -> None:
    for arr in [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([True, False]), np.zeros((0, 5))]:
        back = codec.decode(codec.encode(arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)
        assert back.flags.writeable


def test_numpy_object_arrays_refused() -> None:
    with pytest.raises(InvalidRequest):
        codec.encode(np.array([object()], dtype=object))


def test_refs_round_trip_and_hash() -> None:
    r = ActorRef("Counter", "alice")
    back = codec.decode(codec.encode({"r": r, "s": {r}}))
    assert back["r"] == r and hash(back["r"]) == hash(r) and r in back["s"]


def test_unencodable_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="cannot send"):
        codec.encode(object())


def test_size_limit() -> None:
    with pytest.raises(InvalidRequest, match="exceeds"):
        codec.encode(b"x" * 2000, limit=1000)
    with pytest.raises(InvalidRequest, match="exceeds"):
        codec.decode(b"x" * 2000, limit=1000)


@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_other_errors(data: bytes) -> None:
    try:
        codec.decode(data)
    except InvalidRequest:
        pass


def test_msgpack_bombs() -> None:
    deep = b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(InvalidRequest):
        codec.decode(deep)
    for huge in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff"):
        with pytest.raises(InvalidRequest):
            codec.decode(huge)


def test_bad_extensions() -> None:
    for code, payload in [
        (1, b"\x01"),
        (2, msgpack.packb(["|O8", [1], b"x" * 8])),
        (2, msgpack.packb(["<f8", [3], b"x"])),
        (99, b""),
    ]:
        with pytest.raises(InvalidRequest):
            codec.decode(msgpack.packb(msgpack.ExtType(code, payload)))


def test_pickle_is_never_unpickled() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (exec, ("raise SystemExit('pwned')",))

    blob = pickle.dumps(Evil())
    with pytest.raises(InvalidRequest):
        codec.decode_args(blob)


def test_args_shape() -> None:
    assert codec.decode_args(codec.encode_args((1, "a"), {"k": 2})) == ((1, "a"), {"k": 2})
    for bad in ([1, 2, 3], [[1], {1: 2}], {"a": 1}, [{}, []]):
        with pytest.raises(InvalidRequest):
            codec.decode_args(codec.encode(bad))


def test_out_of_range_int_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        codec.encode(2**70)


def _tuple_default(obj: object) -> object:
    if isinstance(obj, tuple):
        return msgpack.ExtType(3, _packers.pack(list(obj)))  # a pack nested in a pack
    raise TypeError(f"cannot pack {type(obj).__name__}")


_packers = codec.Packers(default=_tuple_default, use_bin_type=True, strict_types=True)


@given(
    st.recursive(
        st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40), lambda kids: st.lists(kids) | st.tuples(kids, kids)
    )
)
def test_reused_packers_pack_what_a_fresh_packer_packs(value: object) -> None:
    """A reused Packer gives the bytes ``msgpack.packb`` gives, nested packs included."""
    expected = msgpack.packb(value, default=_tuple_default, use_bin_type=True, strict_types=True)
    assert _packers.pack(value) == expected
    assert _packers.pack(value) == expected  # again, with the kept Packer


def test_a_packer_is_clean_after_a_failed_or_large_pack() -> None:
    with pytest.raises(TypeError):
        _packers.pack([1, 2, (3, object())])  # fails inside a nested pack, after bytes were written
    assert _packers.pack([7]) == msgpack.packb([7])
    big = b"x" * (1 << 17)
    kept = len(_packers._free)
    assert _packers.pack(big) == msgpack.packb(big, use_bin_type=True)
    assert len(_packers._free) == max(0, kept - 1)  # its buffer grew: the Packer is not kept
    assert _packers.pack([8]) == msgpack.packb([8])


def test_packers_of_threads_do_not_mix() -> None:
    import threading

    errors: list[str] = []

    def run(i: int) -> None:
        for n in range(2000):
            value = [i, n, (i, b"y" * (n % 50))]
            if codec.decode(codec.encode(value)) != value:
                errors.append(f"thread {i} item {n}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- plain arguments: what a co-located call may pass without encoding -------------------------

_plain_value = (
    st.binary(max_size=64)
    | st.text(alphabet=st.characters(max_codepoint=127), max_size=64)
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)


@given(st.lists(_plain_value, max_size=codec.PLAIN_ARGS_MAX))
def test_plain_arguments_are_what_the_codec_gives_back_unchanged(values: list[object]) -> None:
    args = tuple(values)
    assert codec.plain_args(args, {})
    back, kwargs = codec.decode_args(codec.encode_args(args, {}))
    assert back == args and kwargs == {}
    assert [type(v) for v in back] == [type(v) for v in args]  # the callee sees the same types


class _Level(enum.IntEnum):
    LOW = 1


@pytest.mark.parametrize(
    "args,kwargs",
    [
        (([1, 2],), {}),  # mutable: the callee must get a copy
        (({"a": 1},), {}),
        ((bytearray(b"x"),), {}),
        (((1, 2),), {}),  # a tuple is encoded (it may hold mutable values)
        (("é",), {}),  # not ASCII: encoded (and refused there if it holds a lone surrogate)
        (("\udc80",), {}),
        ((1 << 64,), {}),  # beyond msgpack's ints: the encoding refuses it, as across the network
        ((-(1 << 63) - 1,), {}),
        ((_Level.LOW,), {}),  # a subclass travels as its base type: the encoding makes it one
        ((b"x" * ((1 << 16) + 1),), {}),  # large: its size is checked by the encoding
        ((), {"k" * ((1 << 16) + 1): 1}),  # a keyword's name counts too
        ((), {"x": [1]}),
        (tuple(range(codec.PLAIN_ARGS_MAX + 1)), {}),
    ],
)
def test_arguments_that_need_the_encoding_are_not_plain(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    assert not codec.plain_args(args, kwargs)


def test_plain_keyword_arguments_and_the_message_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert codec.plain_args((b"x", 1), {"name": "ok", "flag": True, "none": None, "ratio": 0.5})
    monkeypatch.setattr(codec._config, "MAX_MESSAGE_BYTES", 4096)  # too small to rule out an oversize message
    assert not codec.plain_args((b"x",), {})
