"""Partial state writes: a turn writes only the attributes it changed; large attributes are
parts of their own in the store (a real SQLite file and a real redis-server), written in
the same atomic step as the rest; recovery after a kill reads the whole state back."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluentfn as ff
from fluentfn.host._image import baseline, change, immutable
from fluentfn.host._written import Image
from fluentfn.state import Store
from fluentfn.state._codec import decode_state, encode_state, encode_value
from fluentfn.state._layout import PART_MIN, compose, entries, merge
from fluentfn.state._store import VersionConflict
from fluentfn.testing import kill_host

from .apps import BigState
from .test_store_keys import store  # noqa: F401  (the fixture: a real SQLite file, a real redis-server)

pytestmark = pytest.mark.timeout(300)

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
states = st.dictionaries(st.text(max_size=8), values, max_size=8)


@settings(max_examples=200, deadline=None)
@given(states)
def test_a_state_is_the_concatenation_of_its_attributes(state: dict[str, Any]) -> None:
    whole = encode_state(state)
    assert compose((k, encode_value(v)) for k, v in state.items()) == whole
    assert entries(whole) == [(k, encode_value(v)) for k, v in state.items()]
    assert decode_state(merge(whole, {})) == state


def test_merge_adds_parts_to_the_inline_map() -> None:
    inline = compose([("a", encode_value(1)), ("b", encode_value("x"))])
    whole = merge(inline, {"big": encode_value(b"z" * 10), "b": encode_value("new")})
    assert decode_state(whole) == {"a": 1, "b": "new", "big": b"z" * 10}
    many = compose([(f"k{i}", encode_value(i)) for i in range(70_000)])  # a map32 header
    assert len(decode_state(merge(many, {"p": encode_value(1)}))) == 70_001
    with pytest.raises(ValueError):
        entries(encode_value([1, 2]))


class _Thing:
    pass


def _thing(**attrs: Any) -> _Thing:
    t = _Thing()
    t.__dict__.update(attrs)
    return t


def test_change_writes_only_what_changed() -> None:
    big = b"b" * PART_MIN
    t = _thing(n=0, big=big, table=[0] * PART_MIN, _private=object())
    first = change(t, "T/1", None)
    assert first is not None and set(first.parts) == {"big", "table"}
    image = first.image
    assert image.parts["big"].encoded is None  # immutable: kept by identity, not by bytes
    assert image.parts["table"].encoded is not None
    assert change(t, "T/1", image) is None  # nothing changed
    forced = change(t, "T/1", image, force=True)
    assert forced is not None and forced.parts == {}  # a reply to record: the inline map only
    t.n = 1
    small = change(t, "T/1", image)
    assert small is not None and small.parts == {} and decode_state(small.inline) == {"n": 1}
    t.table[5] = 1  # in place
    inplace = change(t, "T/1", small.image)
    assert inplace is not None and set(inplace.parts) == {"table"}
    t.big = big[:-1] + b"b"  # equal bytes, another object: written (not compared)
    assert set(change(t, "T/1", inplace.image).parts) == {"big"}  # type: ignore[union-attr]
    t.table = [1, 2]  # large -> small: the part goes, the inline map has it
    moved = change(t, "T/1", inplace.image)
    assert moved is not None and moved.parts["table"] is None and "table" in decode_state(moved.inline)
    del t.big
    gone = change(t, "T/1", moved.image)
    assert gone is not None and gone.parts == {"big": None}
    t.bad = _Thing()  # not storable in a message-safe way is fine (pickled): state may hold objects
    assert change(t, "T/1", gone.image) is not None


def test_an_unstorable_attribute_is_named() -> None:
    import threading

    t = _thing(n=1, lock=threading.Lock())
    with pytest.raises(ff.InvalidRequest, match="'lock'"):
        change(t, "T/1", None)


def test_read_only_numpy_arrays_count_as_immutable() -> None:
    arr = np.zeros(10)
    assert not immutable(arr) and immutable(b"x") and immutable(3) and not immutable([1])
    arr.flags.writeable = False
    assert immutable(arr)
    view = np.zeros(10)[2:]
    view.flags.writeable = False
    assert not immutable(view)  # its base can still change
    assert immutable(np.frombuffer(b"abcdefgh", dtype=np.uint8))


def test_baseline_matches_what_the_first_write_produced() -> None:
    t = _thing(n=3, big=b"q" * PART_MIN, table=[0] * PART_MIN)
    first = change(t, "T/1", None)
    assert first is not None
    whole = merge(first.inline, {k: v for k, v in first.parts.items() if v is not None})
    state = decode_state(whole)
    loaded = _thing(**state)
    image: Image = baseline(whole, state)
    assert change(loaded, "T/1", image) is None  # loaded and unchanged: nothing to write
    loaded.table[0] = 9
    after = change(loaded, "T/1", image)
    assert after is not None and set(after.parts) == {"table"}


def test_stores_keep_parts_atomically_with_the_record(store: Store) -> None:  # noqa: F811 (the fixture)
    a = "T/x"
    inline = compose([("n", encode_value(1))])
    v = store.save(a, expected=0, state=inline, fence=None, parts={"big": encode_value(b"1" * 100), "gone": b"\xc0"})
    v = store.save(a, expected=v, state=compose([("n", encode_value(2))]), fence=None, parts={"gone": None})
    record = store.load(a)
    assert record is not None and record.version == v == 2
    assert decode_state(record.state) == {"n": 2, "big": b"1" * 100}
    # A refused write changes nothing: not the record, not its parts.
    with pytest.raises(VersionConflict):
        store.save(a, expected=1, state=inline, fence=None, parts={"big": None, "other": b"\x01"})
    assert decode_state(store.load(a).state) == {"n": 2, "big": b"1" * 100}  # type: ignore[union-attr]
    # A whole write (FaaS mode, an older writer) leaves no part behind.
    store.save(a, expected=2, state=encode_state({"n": 9}), fence=None)
    assert decode_state(store.load(a).state) == {"n": 9}  # type: ignore[union-attr]
    store.save(a, expected=3, state=encode_state({}), fence=None, parts={"p:odd:name\x00é": encode_value(1)})
    assert decode_state(store.load(a).state) == {"p:odd:name\x00é": 1}  # type: ignore[union-attr]
    store.delete_identity(a)
    assert store.load(a) is None
    store.save(a, expected=0, state=encode_state({"fresh": True}), fence=None, parts={})
    assert decode_state(store.load(a).state) == {"fresh": True}  # type: ignore[union-attr]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


STORES = [pytest.param(None, id="sqlite"), pytest.param("redis", id="redis")]


@pytest.mark.parametrize("cluster", STORES, indirect=True)
def test_a_small_change_to_a_large_state_writes_little_and_survives_a_kill(cluster: ff.Cluster) -> None:
    ref = BigState[f"big-{os.urandom(3).hex()}"]
    assert ref.bump() == 1  # the first write: everything
    before = ff.stats()["storage_bytes_written"]
    for _ in range(20):
        ref.bump()
    written = ff.stats()["storage_bytes_written"] - before
    assert written < 20 * 4096, written  # not the 1.3 MB state each time
    ref.poke(7, 42)  # in place, in the large mutable attribute
    before = ff.stats()["storage_bytes_written"]
    ref.swap_blob(3)
    assert ff.stats()["storage_bytes_written"] - before >= 256 * 4096  # a changed part is written
    view = ref.view()
    kill_host(cluster, ref)
    assert ref.view() == view  # recovered whole from the record and its parts
    assert view["n"] == 21 and view["blob"] == _digest(bytes([3]) * (256 * 4096))
    table = [0] * 300_000
    table[7] = 42
    assert view["table"] == _digest(bytes(table))
    ref.shrink()  # a large attribute becomes small: its part is dropped
    kill_host(cluster, ref)
    assert ref.view()["tlen"] == 5
