"""Keys are opaque: no separator, NUL or prefix lets two identities share state, replies
or reminders, on every store (a real SQLite file and a real redis-server). And the KV
area's rows with a ``ttl_s`` are gone once it has run out, on both."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluentfn.state import Store, open_store
from fluentfn.state._redis import RedisStore
from fluentfn.state._sqlite import SqliteStore
from fluentfn.state._store import Reminder, StoreLost

from ._redis import free_port, start_redis

# (a per-test list replaces the profile's: too_slow kept off, as in conftest.py)
FIXTURE_AND_SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

pytestmark = pytest.mark.timeout(300)

# Any text a key may hold (valid Unicode), biased towards the characters stores split on.
tricky = st.text(alphabet=st.sampled_from(["a", ":", "\x00", "/", "|", "é", "1"]), min_size=1, max_size=6)
anything = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
keys = st.one_of(tricky, anything)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            s = open_store(f"sqlite:///{tmp}/state.db")
            yield s
            s.close()
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisStore(url, prefix=f"keys-{os.urandom(4).hex()}")
        yield s
        s.close()


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_AND_SLOW)
@given(a=keys, b=keys, ra=keys, rb=keys)
def test_two_identities_never_share_anything(store: Store, a: str, b: str, ra: str, rb: str) -> None:
    salt = os.urandom(4).hex()  # the store outlives examples: fresh names each time
    addr_a, addr_b = f"T{salt}/{a}", f"T{salt}/{b}"
    if (addr_a, ra) == (addr_b, rb):
        return
    store.save(addr_a, expected=0, state=b"A", fence=None, reply=(ra, b"reply-a"))
    if addr_a != addr_b:
        store.save(addr_b, expected=0, state=b"B", fence=None, reply=(rb, b"reply-b"))
        assert store.load(addr_a).state == b"A" and store.load(addr_b).state == b"B"  # type: ignore[union-attr]
    assert store.get_reply(addr_a, ra) == b"reply-a"
    if (addr_a, ra) != (addr_b, rb):
        assert store.get_reply(addr_b, rb) in (None, b"reply-b")
        if addr_a == addr_b:
            assert store.get_reply(addr_b, rb) is None

    group = f"G{salt}"
    now = time.time()
    store.add_reminder(group, 0, Reminder(addr_a, ra, now - 1, b"pa"))
    store.add_reminder(group, 0, Reminder(addr_b, rb, now - 1, b"pb"))
    due = {(r.address, r.rid): r.payload for r in store.due_reminders(group, 0, now)}
    assert due == {(addr_a, ra): b"pa", (addr_b, rb): b"pb"}
    assert store.cancel_reminder(addr_b, rb) is True
    assert {(r.address, r.rid) for r in store.due_reminders(group, 0, now)} == {(addr_a, ra)}
    assert store.cancel_reminder(addr_b, rb) is False
    assert store.cancel_reminder(addr_a, ra) is True


def test_a_flushed_redis_is_noticed(redis_url: str) -> None:
    import redis

    prefix = f"flush-{os.urandom(4).hex()}"
    store = RedisStore(redis_url, prefix=prefix)
    store.check()
    assert store.claim_shard("G", 0, "ns@a") == 1 and store.shard_owner("G", 0) == (1, "ns@a")
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{prefix}:*"))  # what FLUSHDB does to this store's keys
    with pytest.raises(StoreLost, match="flushed"):
        store.check()
    with pytest.raises(StoreLost):
        store.claim_shard("G", 0, "ns@a")
    store.close()


def test_redis_with_a_password(tmp_path: Path) -> None:
    """redis://:password@host:port/db works; a wrong password is a clear Unavailable that
    never shows the password."""
    import shutil

    import fluentfn as ff

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret", "--save", "", "--dir", str(tmp_path)]
    proc = start_redis(args, port)
    try:
        store = open_store(f"redis://:s3cret@127.0.0.1:{port}/0")
        store.save("T/pw", expected=0, state=b"x", fence=None)
        assert store.load("T/pw").state == b"x"  # type: ignore[union-attr]
        assert "s3cret" not in store.url
        store.close()
        with pytest.raises(ff.Unavailable) as info:
            open_store(f"redis://:wrong-pass@127.0.0.1:{port}/0")
        assert "wrong-pass" not in str(info.value)
    finally:
        proc.terminate()
        proc.wait(10)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_AND_SLOW)
@given(names=st.lists(keys, min_size=1, max_size=6, unique=True), prefix=st.one_of(st.just(""), tricky))
def test_keys_and_delete_touch_exactly_one_type_and_identity(store: Store, names: list[str], prefix: str) -> None:
    salt = os.urandom(4).hex()
    kind, other = f"K{salt}", f"K{salt}x"  # a type whose name extends the first one's
    for name in names:
        store.save(f"{kind}/{name}", expected=0, state=b"s", fence=None, reply=("r", b"reply"))
        store.save(f"{other}/{name}", expected=0, state=b"o", fence=None)
    assert store.keys(kind) == sorted(names)  # code point order (UTF-8 byte order) in both stores
    assert set(store.keys(kind, prefix)) == {n for n in names if n.startswith(prefix)}
    assert len(store.keys(kind, limit=1)) == 1
    victim = names[0]
    store.add_reminder(f"G{salt}", 0, Reminder(f"{kind}/{victim}", "rid", time.time() - 1, b"p"))
    store.delete_identity(f"{kind}/{victim}")
    assert store.load(f"{kind}/{victim}") is None and store.get_reply(f"{kind}/{victim}", "r") is None
    assert store.due_reminders(f"G{salt}", 0, time.time()) == []
    assert set(store.keys(kind)) == set(names[1:]) and set(store.keys(other)) == set(names)
    for name in names[1:]:
        assert store.get_reply(f"{kind}/{name}", "r") == b"reply"


def test_a_kv_row_with_a_ttl_is_gone_once_it_ran_out_and_others_stay(store: Store) -> None:
    salt = os.urandom(4).hex()
    store.put(f"short{salt}", b"1", ttl_s=0.2)
    store.put(f"long{salt}", b"2", ttl_s=3600.0)
    store.put(f"kept{salt}", b"3")
    assert store.get(f"long{salt}") == b"2" and store.get(f"kept{salt}") == b"3"
    time.sleep(0.3)  # (a busy machine only makes this longer: the row is past its ttl either way)
    assert store.get(f"short{salt}") is None
    pruned = store.prune_expired(time.time())
    assert pruned == (1 if isinstance(store, SqliteStore) else 0)  # Redis expires rows itself
    assert store.get(f"long{salt}") == b"2" and store.get(f"kept{salt}") == b"3"
    store.put(f"long{salt}", b"4")  # written again without a ttl: kept for good
    assert store.prune_expired(time.time() + 7200) == 0 and store.get(f"long{salt}") == b"4"


def test_a_sqlite_file_from_before_kv_expiry_opens_and_keeps_its_rows() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)")
        conn.execute("INSERT INTO kv VALUES ('res:1', x'01')")
        conn.commit()
        conn.close()
        s = open_store(f"sqlite:///{path}")
        try:
            assert s.get("res:1") == b"\x01"
            s.put("started:T/a:r", b"1", ttl_s=-1.0)  # already past
            assert s.get("started:T/a:r") is None
            assert s.prune_expired(time.time()) == 1 and s.get("res:1") == b"\x01"
        finally:
            s.close()
