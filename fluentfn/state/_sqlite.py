"""The embedded SQLite store: one WAL-mode file shared by the processes of a machine.

The WAL is copied into the database file by a thread of each process (``_checkpoint``),
not by whichever commit took it past 1,000 pages.

``synchronous=NORMAL`` in WAL mode makes a commit survive the death of any process
(the data is in the OS) but not a power cut; set FLUENTFN_SQLITE_SYNC=FULL for that.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .._config import sqlite_sync
from ._checkpoint import BOUND_PAGES, Checkpointer
from ._layout import merge
from ._store import Record, Reminder, Scheduled, StaleEpoch, StoreLost, VersionConflict, WouldBlock, Write

_LOCK_POLL_S = 0.0002  # how soon a writer tries SQLite's write lock again while another process holds it
_LOCK_POLL_MAX_S = 0.002  # ... at most, backing off
_LOCK_WAIT_S = 30.0  # how long it tries (as long as the busy timeout of the others)


def _locked(exc: sqlite3.OperationalError) -> bool:
    """The write lock is held by another connection (SQLITE_BUSY or SQLITE_LOCKED)."""
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# A record's conditional write; the fenced forms also require that no newer epoch has
# claimed the writer's shard (a missing shard row is epoch 0).
_UPDATE = "UPDATE state SET version=?, state=? WHERE address=? AND version=?"
_INSERT = "INSERT OR IGNORE INTO state (address, version, state) VALUES (?, 1, ?)"
_FENCE = "IFNULL((SELECT epoch FROM shards WHERE grp=? AND shard=?), 0) <= ?"
_UPDATE_FENCED = f"{_UPDATE} AND {_FENCE}"
_INSERT_FENCED = f"INSERT OR IGNORE INTO state (address, version, state) SELECT ?, 1, ? WHERE {_FENCE}"
_CLAIM = (
    "INSERT INTO shards (grp, shard, epoch, owner) VALUES (?, ?, 1, ?)"
    " ON CONFLICT (grp, shard) DO UPDATE SET epoch = epoch + 1, owner = excluded.owner RETURNING epoch"
)
# A claim in one statement (RETURNING: SQLite 3.35) and a hand-over's records in a few
# (UPDATE ... FROM: 3.33); an older SQLite takes a statement per step, as before.
_ONE_STATEMENT = sqlite3.sqlite_version_info >= (3, 35, 0)
# A turn's write, its record and its reply, in one statement: a row inserted into a view
# (it keeps none) whose trigger writes both, or neither (RAISE rolls the statement back).
_TURN_VIEW = (
    "CREATE VIEW IF NOT EXISTS turn_write (address, expected, state, rid, reply, ts, grp, shard, epoch)"
    " AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0"
)
_NOT_WRITTEN = "fluentfn: record not written"
_NEW_FENCE = "IFNULL((SELECT epoch FROM shards WHERE grp = NEW.grp AND shard = NEW.shard), 0) <= NEW.epoch"
"""``_FENCE`` inside a trigger, for the row inserted into its view."""
_TURN_TRIGGER = f"""CREATE TRIGGER IF NOT EXISTS turn_write_insert INSTEAD OF INSERT ON turn_write BEGIN
  UPDATE state SET version = NEW.expected + 1, state = NEW.state WHERE address = NEW.address AND version = NEW.expected
    AND {_NEW_FENCE};
  SELECT RAISE(ABORT, '{_NOT_WRITTEN}') WHERE changes() = 0;
  INSERT OR REPLACE INTO replies (address, rid, reply, ts) VALUES (NEW.address, NEW.rid, NEW.reply, NEW.ts);
END"""
_TURN_WRITE = "INSERT INTO turn_write VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# A batch's records (a hand-over), up to ``_BATCH`` in one statement: rows inserted into a
# view whose trigger writes each (an update, or a new record: ``expected`` 0), fenced, or
# refuses the whole statement. Rows whose address is NULL pad a batch to a size already
# prepared: each new statement text costs a prepare, and every call into SQLite is a wait
# for the GIL on a saturated host.
_BATCH_VIEW = (
    "CREATE VIEW IF NOT EXISTS batch_write (address, expected, state, grp, shard, epoch)"
    " AS SELECT NULL, NULL, NULL, NULL, NULL, NULL WHERE 0"
)
_NEW_FENCED = f"(NEW.grp IS NULL OR {_NEW_FENCE})"  # (a batch may be written unfenced)
_BATCH_TRIGGER = f"""CREATE TRIGGER IF NOT EXISTS batch_write_insert INSTEAD OF INSERT ON batch_write
WHEN NEW.address IS NOT NULL BEGIN
  UPDATE state SET version = NEW.expected + 1, state = NEW.state
    WHERE NEW.expected > 0 AND address = NEW.address AND version = NEW.expected AND {_NEW_FENCED};
  SELECT RAISE(ABORT, '{_NOT_WRITTEN}') WHERE NEW.expected > 0 AND changes() = 0;
  INSERT OR IGNORE INTO state (address, version, state) SELECT NEW.address, 1, NEW.state
    WHERE NEW.expected = 0 AND {_NEW_FENCED};
  SELECT RAISE(ABORT, '{_NOT_WRITTEN}') WHERE NEW.expected = 0 AND changes() = 0;
END"""
_BATCH = 512  # records per statement of a batch (6 variables each; SQLite allows 32,766)


def _batch_sql(size: int) -> str:
    """The statement that writes ``size`` records (a power of two: a few texts, each
    prepared once per connection and then taken from its statement cache)."""
    return "INSERT INTO batch_write VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * size)


class _Transaction:
    """``SqliteStore._write``'s block (a class, not a generator: it runs once per turn
    that writes)."""

    __slots__ = ("_conn", "_nowait", "_queued", "_store", "_urgent")

    def __init__(self, store: SqliteStore, nowait: bool, urgent: bool) -> None:
        self._store = store
        self._nowait = nowait
        self._urgent = urgent

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        self._queued = store._take_turn(self._nowait, self._urgent)
        try:
            self._conn = conn = store._writing_conn()
            _execute(conn, "BEGIN IMMEDIATE", (), nowait=self._nowait, urgent=self._urgent)
        except BaseException:
            if self._queued:
                store._writer.release()
            raise
        return conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn = self._conn
        try:
            if kind is not None:
                if conn.in_transaction:  # (SQLite ends it itself on some errors)
                    conn.execute("ROLLBACK")
                return
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # the commit failed: nothing of the block is kept
                    conn.execute("ROLLBACK")
                raise
            self._store._checkpointer.wrote()
        finally:
            if self._queued:
                self._store._writer.release()


def _record(
    address: str, expected: int, state: bytes, fence: tuple[str, int, int] | None
) -> tuple[str, tuple[object, ...]]:
    """The statement of one record's conditional write (version ``expected`` to one
    more; 0: a new record), fenced when ``fence`` is given."""
    if fence is None:
        return (_UPDATE, (expected + 1, state, address, expected)) if expected else (_INSERT, (address, state))
    if expected:
        return _UPDATE_FENCED, (expected + 1, state, address, expected, *fence)
    return _INSERT_FENCED, (address, state, *fence)


def _execute(
    conn: sqlite3.Connection, sql: str, args: Sequence[object], *, nowait: bool, urgent: bool
) -> sqlite3.Cursor:
    """``conn.execute(sql, args)`` on a writing connection (no busy timeout) outside a
    transaction: a statement that takes SQLite's write lock (``BEGIN IMMEDIATE``, or one
    write autocommitted), tried again while another connection holds the lock (see
    ``SqliteStore._write``). Refused before it did anything, so trying again is safe —
    also when its snapshot was not the newest (SQLITE_BUSY_SNAPSHOT)."""
    deadline = 0.0  # set at the first refusal: most writers get the lock at once
    tries = 0
    while True:
        try:
            return conn.execute(sql, args)
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            if nowait:
                raise WouldBlock(str(exc)) from None
            now = time.monotonic()
            if not deadline:
                deadline = now + _LOCK_WAIT_S
            elif now > deadline:
                raise
        tries += 1
        time.sleep(_LOCK_POLL_S if urgent else min(_LOCK_POLL_MAX_S, _LOCK_POLL_S * tries))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (address TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB);
CREATE TABLE IF NOT EXISTS shards (grp TEXT NOT NULL, shard INTEGER NOT NULL, epoch INTEGER NOT NULL,
                                   owner TEXT NOT NULL DEFAULT '', PRIMARY KEY (grp, shard));
CREATE TABLE IF NOT EXISTS reminders (address TEXT NOT NULL, rid TEXT NOT NULL, grp TEXT NOT NULL,
                                      shard INTEGER NOT NULL, due REAL NOT NULL, payload BLOB,
                                      PRIMARY KEY (address, rid));
CREATE INDEX IF NOT EXISTS reminders_due ON reminders (grp, shard, due);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parts (address TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,
                                  PRIMARY KEY (address, name));
CREATE TABLE IF NOT EXISTS replies (address TEXT NOT NULL, rid TEXT NOT NULL, reply BLOB, ts REAL NOT NULL,
                                    PRIMARY KEY (address, rid)) WITHOUT ROWID;

"""


class SqliteStore:
    """A ``Store`` on one SQLite file; a connection per thread."""

    def __init__(self, path: Path, url: str) -> None:
        self.url = url
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writer = threading.Lock()  # this process's writers take turns (see _write)
        self._sync = sqlite_sync()
        self._commit_waits = self._sync in ("FULL", "EXTRA")  # every commit waits for the disk
        self._checkpointer = Checkpointer(path)
        weakref.finalize(self, self._checkpointer.stop)  # a store dropped unclosed keeps no thread
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # processes opening a new file at once: one sets it up
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(shards)")}
            if "owner" not in columns:  # a file from before shard owners were recorded
                conn.execute("ALTER TABLE shards ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            if "expires" not in {row[1] for row in conn.execute("PRAGMA table_info(kv)")}:  # (likewise)
                conn.execute("ALTER TABLE kv ADD COLUMN expires REAL")
            conn.execute("CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL")
            conn.execute(_TURN_VIEW)
            conn.execute(_TURN_TRIGGER)
            conn.execute(_BATCH_VIEW)
            conn.execute(_BATCH_TRIGGER)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (os.urandom(12).hex(),))
            self.store_id = str(conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        st = os.stat(path)
        self._file = (st.st_dev, st.st_ino)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            # Before WAL: only a file that has no page yet takes it (the checkpointer gives
            # deletes' pages back; an older file keeps them, as before). Asked only of such a
            # file: on one in use, the pragma refused other connections' writes meanwhile
            # (SQLITE_BUSY to a writer that does not wait, such as a hand-over on a loop).
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute(f"PRAGMA wal_autocheckpoint={BOUND_PAGES}")  # the checkpointer's thread does it
            self._local.conn = conn
        return conn

    def _writing_conn(self) -> sqlite3.Connection:
        """This thread's writing connection, taken only by ``_write``: its statements
        never wait for SQLite's write lock (``_write`` waits for it itself)."""
        conn: sqlite3.Connection | None = getattr(self._local, "writing", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=0.0, isolation_level=None, check_same_thread=True)
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute(f"PRAGMA wal_autocheckpoint={BOUND_PAGES}")
            self._local.writing = conn
        return conn

    def _write(self, *, nowait: bool = False, urgent: bool = False) -> _Transaction:
        """This thread's writing connection inside a transaction that holds the write lock;
        committed at the end, rolled back if the block raises.

        SQLite's own busy handler waits for the lock by sleeping 1, 2, 5, ... up to 100 ms
        between tries, so under steady writes a waiter slept through many moments when the
        lock was free (a partition's claim during a move under load waited up to 340 ms,
        and a move waits for the turns' writes too). So the writers of one process take
        turns on a lock of their own first, and only one of them at a time asks SQLite,
        trying again every 0.2 ms, then every 2 ms at most (``urgent``, what a move waits
        for — the claim of a moving partition, its hand-over, a turn still running on a
        draining one: not queued behind this process's writers, every 0.2 ms), for up to
        ``_LOCK_WAIT_S``. ``nowait``:
        ``WouldBlock`` at once if either lock is held.

        On a saturated host every statement costs a wait for the GIL (the ``sqlite3``
        module lets it go around each one), and a transaction holds SQLite's lock, which
        the other processes wait for, across those waits: timed under the elastic bench's
        load, a move's hand-over held it for up to 31 ms. So the writes a move waits for
        take as few statements as SQLite allows (``_write_one``, ``_ONE_STATEMENT``)."""
        return _Transaction(self, nowait, urgent)

    def _take_turn(self, nowait: bool, urgent: bool) -> bool:
        """A write's start (``_Transaction``, ``_write_one``): this process's writers take
        turns, except what a move waits for (``urgent``), which goes first. ``nowait``:
        WouldBlock, nothing done, if the write would wait — for another thread of this
        process, or for the disk at every commit (``synchronous=FULL``). Returns whether
        it took a turn (to give back when the write ends)."""
        if nowait and self._commit_waits:
            raise WouldBlock(f"every commit waits for the disk (synchronous={self._sync})")
        if urgent:
            return False
        if not self._writer.acquire(not nowait):
            raise WouldBlock("another thread of this process is writing")
        return True

    def _write_one(
        self, sql: str, args: Sequence[object], *, nowait: bool = False, urgent: bool = False
    ) -> tuple[int, list[Any]]:
        """One writing statement as its own transaction, run to its end (SQLite's lock is
        held for that statement alone, not across GIL waits), taking turns and waiting for
        the lock as ``_write`` does. Returns the rows it changed and the rows it returned.
        (Written out rather than a ``_Transaction`` with no BEGIN: a turn's write is one of
        these, and each frame less is a few hundred ns on a host's cold caches.)"""
        queued = self._take_turn(nowait, urgent)
        try:
            conn = self._writing_conn()
            try:
                cur = _execute(conn, sql, args, nowait=nowait, urgent=urgent)
                rows = cur.fetchall()  # (a RETURNING statement commits once it has been read to its end)
            except BaseException:
                if conn.in_transaction:  # (a statement stopped part way: nothing of it is kept)
                    conn.execute("ROLLBACK")
                raise
            self._checkpointer.wrote()
            return cur.rowcount, rows
        finally:
            if queued:
                self._writer.release()

    def check(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreLost(f"{self.url}: the database file was deleted") from None
        if (st.st_dev, st.st_ino) != self._file:
            raise StoreLost(f"{self.url}: the database file was replaced by another one")

    def claim_shard(self, group: str, shard: int, owner: str = "", *, nowait: bool = False) -> int:
        self.check()  # never claim inside a file that is no longer the store
        if _ONE_STATEMENT:
            _, rows = self._write_one(_CLAIM, (group, shard, owner), nowait=nowait, urgent=True)
            return int(rows[0][0])
        with self._write(nowait=nowait, urgent=True) as conn:
            row = conn.execute("SELECT epoch FROM shards WHERE grp=? AND shard=?", (group, shard)).fetchone()
            epoch = (row[0] if row else 0) + 1
            conn.execute(
                "INSERT OR REPLACE INTO shards (grp, shard, epoch, owner) VALUES (?, ?, ?, ?)",
                (group, shard, epoch, owner),
            )
        return int(epoch)

    def shard_epoch(self, group: str, shard: int) -> int:
        row = self._conn().execute("SELECT epoch FROM shards WHERE grp=? AND shard=?", (group, shard)).fetchone()
        return int(row[0]) if row else 0

    def keys(self, type_name: str, prefix: str = "", limit: int | None = None) -> list[str]:
        start = f"{type_name}/{prefix}"
        raw = start.encode("utf-8", "surrogatepass")  # bytes: SQLite's text functions stop at a NUL
        rows = self._conn().execute(
            "SELECT address FROM state WHERE address >= ? AND substr(CAST(address AS BLOB), 1, ?) = ? "
            "ORDER BY address LIMIT ?",
            (start, len(raw), raw, -1 if limit is None else limit),
        )
        return [str(row[0])[len(type_name) + 1 :] for row in rows]

    def delete_identity(self, address: str) -> None:
        with self._write() as conn:
            for table in ("state", "parts", "replies", "reminders"):
                conn.execute(f"DELETE FROM {table} WHERE address=?", (address,))
        self._checkpointer.freed()

    def shard_owner(self, group: str, shard: int) -> tuple[int, str]:
        query = "SELECT epoch, owner FROM shards WHERE grp=? AND shard=?"
        row = self._conn().execute(query, (group, shard)).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, "")

    def load(self, address: str) -> Record | None:
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot: the record and its parts as one write left them
        try:
            row = conn.execute("SELECT version, state FROM state WHERE address=?", (address,)).fetchone()
            parts = conn.execute("SELECT name, value FROM parts WHERE address=?", (address,)).fetchall()
        finally:
            conn.execute("COMMIT")
        if row is None:
            return None
        inline = bytes(row[1] or b"")
        return Record(int(row[0]), merge(inline, {str(n): bytes(v) for n, v in parts}) if parts else inline)

    def save(
        self,
        address: str,
        *,
        expected: int,
        state: bytes,
        fence: tuple[str, int, int] | None,
        reply: tuple[str, bytes] | None = None,
        reminders: Sequence[Scheduled] = (),
        parts: Mapping[str, bytes | None] | None = None,
        nowait: bool = False,
        urgent: bool = False,
    ) -> int:
        if not reminders and parts is not None and not parts:
            # A turn's record and reply, or the record alone (a write-behind, a flush): one
            # statement, no transaction that holds the lock across GIL waits.
            if reply is not None and expected and fence is not None:
                args = (address, expected, state, reply[0], reply[1], time.time(), *fence)
                try:  # (a view's insert counts no rows: only a refusal says it was not written)
                    self._write_one(_TURN_WRITE, args, nowait=nowait, urgent=urgent)
                except sqlite3.IntegrityError as exc:
                    if _NOT_WRITTEN not in str(exc):
                        raise
                    self._refused(self._writing_conn(), address, expected, fence)
                return expected + 1
            if reply is None:
                changed, _ = self._write_one(*_record(address, expected, state, fence), nowait=nowait, urgent=urgent)
                if changed != 1:
                    self._refused(self._writing_conn(), address, expected, fence)
                return expected + 1
        with _Transaction(self, nowait, urgent) as conn:  # (``_write``, one call fewer a turn)
            version = self._put(conn, address, expected, state, parts, fence)
            if reply is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO replies (address, rid, reply, ts) VALUES (?, ?, ?, ?)",
                    (address, reply[0], reply[1], time.time()),
                )
            for item in reminders:
                self._add_reminder(conn, item)
        return version

    def save_many(
        self,
        writes: Sequence[Write],
        *,
        fence: tuple[str, int, int] | None,
        urgent: bool = False,
        nowait: bool = False,
    ) -> list[int]:
        if not _ONE_STATEMENT:
            with self._write(nowait=nowait, urgent=urgent) as conn:  # one transaction: a raise rolls every record back
                self._check_fence(conn, fence)
                return [self._put(conn, w.address, w.expected, w.state, w.parts) for w in writes]
        if not writes:
            return []
        plain = [w for w in writes if w.parts is not None and not w.parts]
        if len(plain) == len(writes) and len(writes) <= _BATCH:  # (most hand-overs) one statement, no BEGIN
            sql, args = self._batch(writes, fence)
            try:
                self._write_one(sql, args, nowait=nowait, urgent=urgent)
            except sqlite3.IntegrityError as exc:
                if _NOT_WRITTEN not in str(exc):
                    raise
                self._conflict(self._writing_conn(), writes, fence)
            return [w.expected + 1 for w in writes]
        with self._write(nowait=nowait, urgent=urgent) as conn:  # one transaction: a raise rolls every record back
            other = [w for w in writes if w.parts is None or w.parts]
            if other:
                self._check_fence(conn, fence)
                for w in other:
                    self._put(conn, w.address, w.expected, w.state, w.parts)
            for i in range(0, len(plain), _BATCH):
                chunk = plain[i : i + _BATCH]
                try:
                    conn.execute(*self._batch(chunk, fence))
                except sqlite3.IntegrityError as exc:
                    if _NOT_WRITTEN not in str(exc):
                        raise
                    self._conflict(conn, chunk, fence)
        return [w.expected + 1 for w in writes]

    @staticmethod
    def _batch(writes: Sequence[Write], fence: tuple[str, int, int] | None) -> tuple[str, list[object]]:
        """The statement (``_BATCH_TRIGGER``) that writes ``writes`` (at most ``_BATCH``, no
        parts), all or none, fenced; padded with rows that write nothing."""
        size = 1 << (len(writes) - 1).bit_length()
        group, shard, epoch = fence if fence is not None else (None, None, None)
        args: list[object] = []
        for w in writes:
            args += (w.address, w.expected, w.state, group, shard, epoch)
        args += [None] * (6 * (size - len(writes)))
        return _batch_sql(size), args

    @staticmethod
    def _conflict(conn: sqlite3.Connection, writes: Sequence[Write], fence: tuple[str, int, int] | None) -> NoReturn:
        """Raise why a batch was not written — StaleEpoch, or the first record whose
        version is not the one expected, or an address named twice — once its transaction,
        if it had one, is rolled back (what it reads then is as the batch found it)."""
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        SqliteStore._check_fence(conn, fence)
        seen: set[str] = set()
        for w in writes:
            row = conn.execute("SELECT version FROM state WHERE address=?", (w.address,)).fetchone()
            if (row[0] if row else 0) != w.expected:
                raise VersionConflict(f"{w.address} is at version {row[0] if row else 0}, not {w.expected}")
            if w.address in seen:
                raise VersionConflict(f"{w.address} is named twice in one batch")
            seen.add(w.address)
        raise VersionConflict(f"{len(writes)} records were not all written")

    @staticmethod
    def _check_fence(conn: sqlite3.Connection, fence: tuple[str, int, int] | None) -> None:
        if fence is not None:
            group, shard, epoch = fence
            row = conn.execute("SELECT epoch FROM shards WHERE grp=? AND shard=?", (group, shard)).fetchone()
            if row is not None and row[0] > epoch:
                raise StaleEpoch(f"shard {group}/{shard} moved to epoch {row[0]} (writer has {epoch})")

    @staticmethod
    def _put(
        conn: sqlite3.Connection,
        address: str,
        expected: int,
        state: bytes,
        parts: Mapping[str, bytes | None] | None,
        fence: tuple[str, int, int] | None = None,
    ) -> int:
        """One record's conditional write, inside a transaction; returns its new version.
        ``fence`` is checked by the same statement (one statement fewer per turn)."""
        if conn.execute(*_record(address, expected, state, fence)).rowcount != 1:
            SqliteStore._refused(conn, address, expected, fence)
        if parts is None:
            conn.execute("DELETE FROM parts WHERE address=?", (address,))
        else:
            for name, value in parts.items():
                if value is None:
                    conn.execute("DELETE FROM parts WHERE address=? AND name=?", (address, name))
                else:
                    put = "INSERT OR REPLACE INTO parts (address, name, value) VALUES (?, ?, ?)"
                    conn.execute(put, (address, name, value))
        return expected + 1

    @staticmethod
    def _refused(conn: sqlite3.Connection, address: str, expected: int, fence: tuple[str, int, int] | None) -> NoReturn:
        """Raise why a record's conditional write wrote nothing: StaleEpoch or VersionConflict."""
        SqliteStore._check_fence(conn, fence)  # StaleEpoch if that is why
        row = conn.execute("SELECT version FROM state WHERE address=?", (address,)).fetchone()
        raise VersionConflict(f"{address} is at version {row[0] if row else 0}, not {expected}")

    def get_reply(self, address: str, request_id: str) -> bytes | None:
        row = (
            self._conn()
            .execute("SELECT reply FROM replies WHERE address=? AND rid=?", (address, request_id))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def _autocommit(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        """One statement in a transaction of its own, on this thread's connection."""
        cur = self._conn().execute(sql, args)
        self._checkpointer.wrote()
        return cur

    def prune_replies(self, older_than: float) -> int:
        return self._deleted(self._autocommit("DELETE FROM replies WHERE ts < ?", (older_than,)))

    def _deleted(self, cur: sqlite3.Cursor) -> int:
        """A delete's count of rows; their pages go back to the file system (``Checkpointer.freed``)."""
        if cur.rowcount > 0:
            self._checkpointer.freed()
        return int(cur.rowcount)

    def add_reminder(self, group: str, shard: int, reminder: Reminder) -> None:
        self._add_reminder(self._conn(), Scheduled(group, shard, reminder))
        self._checkpointer.wrote()

    @staticmethod
    def _add_reminder(conn: sqlite3.Connection, item: Scheduled) -> None:
        rem = item.row
        conn.execute(
            # IGNORE: a reminder id is derived from its turn's request id; a re-run turn adds it once
            "INSERT OR IGNORE INTO reminders (address, rid, grp, shard, due, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (rem.address, rem.rid, item.group, item.shard, rem.due, rem.payload),
        )

    def cancel_reminder(self, address: str, rid: str) -> bool:
        cur = self._autocommit("DELETE FROM reminders WHERE address=? AND rid=?", (address, rid))
        return cur.rowcount > 0

    def reschedule_reminder(self, group: str, shard: int, address: str, rid: str, due: float) -> bool:
        cur = self._autocommit("UPDATE reminders SET due=? WHERE address=? AND rid=?", (due, address, rid))
        return cur.rowcount > 0

    def reminders_of(self, address: str) -> list[Reminder]:
        rows = self._conn().execute(
            "SELECT address, rid, due, payload FROM reminders WHERE address=? ORDER BY due", (address,)
        )
        return [Reminder(str(a), str(r), float(d), bytes(p or b"")) for a, r, d, p in rows]

    def due_reminders(self, group: str, shard: int, now: float, limit: int = 100) -> list[Reminder]:
        rows = (
            self._conn()
            .execute(
                "SELECT address, rid, due, payload FROM reminders"
                " WHERE grp=? AND shard=? AND due<=? ORDER BY due LIMIT ?",
                (group, shard, now, limit),
            )
            .fetchall()
        )
        return [Reminder(r[0], r[1], float(r[2]), bytes(r[3] or b"")) for r in rows]

    def put(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        expires = None if ttl_s is None else time.time() + ttl_s
        self._autocommit("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)", (key, value, expires))

    def get(self, key: str) -> bytes | None:
        row = self._conn().execute("SELECT value, expires FROM kv WHERE key=?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return bytes(row[0])

    def prune_expired(self, now: float) -> int:
        return self._deleted(self._autocommit("DELETE FROM kv WHERE expires < ?", (now,)))

    def delete(self, key: str) -> None:
        self._deleted(self._autocommit("DELETE FROM kv WHERE key=?", (key,)))

    def close(self) -> None:
        self._checkpointer.close()
        for name in ("conn", "writing"):
            conn = getattr(self._local, name, None)
            if conn is not None:
                conn.close()
                setattr(self._local, name, None)
