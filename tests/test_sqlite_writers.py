"""SQLite writers: a process's writers take turns, a waiting writer gets the write lock
once it is free (however long another process held it), a claim waits for nobody of its
own process, and every write lands exactly once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fluentfn.state import open_store
from fluentfn.state._codec import decode_state, encode_state
from fluentfn.state._sqlite import SqliteStore, _locked
from fluentfn.state._store import WouldBlock, Write

pytestmark = pytest.mark.timeout(120)


def _store(tmp_path: Path) -> SqliteStore:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(store, SqliteStore)
    return store


def test_a_writer_waits_for_a_lock_held_longer_than_sqlites_own_backoff(tmp_path: Path) -> None:
    """Another connection holds the write lock for a while; the save and the claim wait
    (no 'database is locked'), then each writes exactly once."""
    store = _store(tmp_path)
    store.save("T/a", expected=0, state=encode_state({"n": 1}), fence=None)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    results: dict[str, object] = {}

    def save() -> None:
        try:
            results["save"] = store.save("T/a", expected=1, state=encode_state({"n": 2}), fence=None)
        except Exception as exc:  # the assertion below shows it
            results["save"] = exc

    def claim() -> None:
        try:
            results["claim"] = store.claim_shard("g", 0)
        except Exception as exc:
            results["claim"] = exc

    threads = [threading.Thread(target=save), threading.Thread(target=claim)]
    for t in threads:
        t.start()
    threads[0].join(0.3)
    threads[1].join(0.3)
    assert results == {}  # both still wait: the lock is held
    other.execute("ROLLBACK")
    other.close()
    for t in threads:
        t.join(60)
    assert results == {"save": 2, "claim": 1}
    assert decode_state(store.load("T/a").state) == {"n": 2}  # type: ignore[union-attr]
    assert store.shard_epoch("g", 0) == 1


def test_a_nowait_write_is_refused_while_another_thread_of_the_process_writes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save("T/b", expected=0, state=encode_state({"n": 1}), fence=None)
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with store._write() as conn:
            conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('x', x'00')")
            inside.set()
            leave.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(30)
        with pytest.raises(WouldBlock):
            store.save("T/b", expected=1, state=encode_state({"n": 2}), fence=None, nowait=True)
        # The claim of a moving partition does not queue behind this process's writers:
        # it asks SQLite directly (and waits here only for SQLite's lock, held by `hold`).
        claimed: list[int] = []
        claimer = threading.Thread(target=lambda: claimed.append(store.claim_shard("g", 3)))
        claimer.start()
    finally:
        leave.set()
        holder.join(30)
    claimer.join(60)
    assert claimed == [1]
    assert decode_state(store.load("T/b").state) == {"n": 1}  # the refused write wrote nothing
    assert store.get("x") == b"\x00"


def test_the_writes_a_move_waits_for_do_not_queue_behind_the_process_writers(tmp_path: Path) -> None:
    """``urgent`` (a turn still running on a draining partition, the hand-over) asks
    SQLite directly: while another writer of this process holds its turn, an urgent save
    and save_many write at once, where a plain one would wait (``nowait``: refused)."""
    store = _store(tmp_path)
    store.save("T/d", expected=0, state=encode_state({"n": 1}), fence=None)
    assert store._writer.acquire(timeout=30)  # another thread's turn among this process's writers
    try:
        with pytest.raises(WouldBlock):
            store.save("T/d", expected=1, state=encode_state({"n": 2}), fence=None, nowait=True)
        assert store.save("T/d", expected=1, state=encode_state({"n": 2}), fence=None, urgent=True) == 2
        epoch = store.claim_shard("g", 1)
        writes = [Write("T/d", 2, encode_state({"n": 3})), Write("T/e", 0, encode_state({"n": 1}))]
        assert store.save_many(writes, fence=("g", 1, epoch), urgent=True) == [3, 1]
    finally:
        store._writer.release()
    assert decode_state(store.load("T/d").state) == {"n": 3}  # type: ignore[union-attr]
    assert decode_state(store.load("T/e").state) == {"n": 1}  # type: ignore[union-attr]


def test_a_failing_block_rolls_back_and_lets_the_next_writer_in(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(RuntimeError), store._write() as conn:
        conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('y', x'01')")
        raise RuntimeError("the block failed")
    assert store.get("y") is None
    assert store.save("T/c", expected=0, state=encode_state({"n": 1}), fence=None, nowait=True) == 1


def test_lock_errors_are_told_from_others() -> None:
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    snapshot = sqlite3.OperationalError("database is locked")
    snapshot.sqlite_errorcode = sqlite3.SQLITE_BUSY | (2 << 8)  # type: ignore[attr-defined]  # BUSY_SNAPSHOT
    io = sqlite3.OperationalError("disk I/O error")
    io.sqlite_errorcode = sqlite3.SQLITE_IOERR  # type: ignore[attr-defined]
    assert _locked(busy) and _locked(snapshot)
    assert not _locked(io)


_WRITER = """
import sys
from fluentfn.state import open_store
from fluentfn.state._codec import decode_state, encode_state
from fluentfn.state._store import VersionConflict
store = open_store(sys.argv[1])
for i in range(int(sys.argv[3])):
    while True:  # read-modify-write with the version: a conflict is tried again, never lost
        rec = store.load(sys.argv[2])
        version, n = (rec.version, decode_state(rec.state)["n"]) if rec else (0, 0)
        try:
            store.save(sys.argv[2], expected=version, state=encode_state({"n": n + 1}), fence=None)
            break
        except VersionConflict:
            continue
"""


def test_threads_and_processes_writing_one_file_lose_and_repeat_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store = _store(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, "T/shared", "60"]) for _ in range(2)]
    errors: list[BaseException] = []

    def thread_writes(address: str) -> None:
        try:
            for i in range(60):
                store.save(address, expected=i, state=encode_state({"n": i + 1}), fence=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_writes, args=(f"T/own-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    claims = [store.claim_shard("g", 7) for _ in range(20)]
    for t in threads:
        t.join(90)
    assert [p.wait(90) for p in procs] == [0, 0]
    assert not errors, errors
    assert claims == list(range(1, 21))
    for k in range(4):
        rec = store.load(f"T/own-{k}")
        assert rec is not None and rec.version == 60 and decode_state(rec.state) == {"n": 60}
    shared = store.load("T/shared")
    assert shared is not None and decode_state(shared.state) == {"n": 120}
