"""The SQLite store's WAL is checkpointed by a thread of its own, not by the commit that
happens to take it past SQLite's default 1,000 pages; the connections' own automatic
checkpoint is only a bound."""

from __future__ import annotations

import gc
import sqlite3
import time
from pathlib import Path

import pytest

from fluentfn.state import _checkpoint, open_store
from fluentfn.state._checkpoint import BOUND_PAGES
from fluentfn.state._sqlite import SqliteStore

pytestmark = pytest.mark.timeout(120)


def _store(tmp_path: Path) -> SqliteStore:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(store, SqliteStore)
    return store


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + 60.0  # generous: a loaded machine schedules the thread late
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within 60 s: {what}")
        time.sleep(0.01)


def test_commits_are_copied_into_the_database_file_by_the_thread(tmp_path: Path) -> None:
    store = _store(tmp_path)
    db = Path(store.path)
    before = db.stat().st_size
    blob = b"x" * 3000
    n = _checkpoint.EVERY_COMMITS + 2  # a checkpoint's worth, in fewer pages than the bound or SQLite's default
    for i in range(n):
        store.save(f"T/{i}", expected=0, state=blob, fence=None, reply=(f"r{i}", b"ok"))
    # The writers' own automatic checkpoint is the bound, so only the thread copies pages
    # into the database file (it grows by the records' pages).
    writer = store._writing_conn()
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BOUND_PAGES
    checkpointer = store._checkpointer
    _until(
        lambda: checkpointer.checkpoints >= 1 and db.stat().st_size >= before + _checkpoint.EVERY_COMMITS * 3000,
        "a checkpoint that copied the WAL into the file",
    )
    # Everything stays readable, from the file and from a connection that opens it afresh.
    other = sqlite3.connect(db)
    assert other.execute("SELECT count(*) FROM state").fetchone()[0] == n
    other.close()
    record = store.load("T/7")
    assert record is not None and record.state == blob
    store.close()


def test_close_stops_the_thread_and_later_commits_still_land(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "EVERY_COMMITS", 1)
    store = _store(tmp_path)
    store.put("k", b"v")
    thread = store._checkpointer._thread
    assert thread is not None
    store.close()
    assert not thread.is_alive()
    store.put("k", b"w")  # a closed store's connections reopen; the bound checkpoints from now on
    assert store.get("k") == b"w"
    assert store._checkpointer._thread is thread  # no new thread after close
    store.close()


def test_an_idle_store_keeps_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "IDLE_S", 0.05)
    monkeypatch.setattr(_checkpoint, "EVERY_COMMITS", 1)
    store = _store(tmp_path)
    store.put("k", b"v")
    checkpointer = store._checkpointer
    _until(lambda: checkpointer._thread is None, "the idle thread ended")
    store.put("k", b"w")  # the next commit starts another
    assert checkpointer.threads == 2 and checkpointer._thread is not None
    assert store.get("k") == b"w"
    store.close()


def test_a_store_dropped_without_close_keeps_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "IDLE_S", 3600.0)  # not idleness: the store's end stops it
    monkeypatch.setattr(_checkpoint, "EVERY_COMMITS", 1)
    store = _store(tmp_path)
    store.put("k", b"v")
    thread = store._checkpointer._thread
    assert thread is not None and thread.is_alive()
    del store
    gc.collect()
    thread.join(timeout=60.0)
    assert not thread.is_alive()
