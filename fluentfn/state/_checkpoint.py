"""A SQLite store's WAL checkpoints, in a thread of their own.

By default the connection whose commit takes the WAL past 1,000 pages copies the WAL
into the database file and syncs both, in that commit: about one commit in 170 of a
``persist="call"`` turn paid 20 ms or more for it (p99.9 of a write 22 ms, its mean
twice its median, on a 2-core VM). Here every ``EVERY_COMMITS`` commits of a process
wake a checkpointer thread instead, which copies what the WAL holds (``PASSIVE``: it
never waits for, or blocks, a reader or a writer). A writer restarts the WAL from its beginning
only if, when it begins, everything in the WAL has been copied: under writes that never
pause that moment may not come, and the WAL grows to the connections' own automatic
checkpoint, kept as a bound (``BOUND_PAGES``): a commit then checkpoints as before, but
once per 8,192 pages instead of 1,000, with most of them already copied.

The same thread gives the pages that deletes freed back to the file system: a file made
with ``auto_vacuum=INCREMENTAL`` (every file the store makes) keeps its free pages until
told, and SQLite never shrinks a file by itself otherwise. After a delete the store calls
``freed``; at the thread's next checkpoint, or once it is idle, it vacuums them away in
steps of ``RECLAIM_STEP_PAGES``, each its own short write transaction that never waits
for the lock (a busy moment is retried at the next turn), and keeps ``RECLAIM_MIN_PAGES``
for the next writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

BOUND_PAGES = 8192
"""A connection's commit checkpoints the WAL itself past this many pages (32 MB of 4 KB
pages): only if the checkpointer thread cannot keep up."""

EVERY_COMMITS = 128
"""A checkpoint is due once this process has committed this many times since the last
(about as often as SQLite's own default; each one syncs the WAL and the database file,
and a sync of the WAL holds up the appends of a concurrent commit)."""

IDLE_S = 5.0
"""A thread that was given no checkpoint for this long ends (the next commit starts another):
an idle store keeps no thread (nor does a closed one, or one dropped unclosed: ``stop``)."""

RECLAIM_MIN_PAGES = 256
"""Free pages a file keeps after deletes, for its next writes (1 MB of 4 KB pages)."""

RECLAIM_STEP_PAGES = 256
"""Free pages given back per write transaction (a few ms of the write lock)."""


class Checkpointer:
    """One store file's checkpointer thread, started by a commit it hears of.

    Invariant: while ``_due`` or ``_freed`` is set, a thread is alive that will see it
    (they are set, and a thread ends, only under ``_lock``), so a commit that finds
    ``_due`` set costs nothing.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._due = threading.Event()  # a checkpoint is due
        self._freed = threading.Event()  # deletes freed pages since the last reclaim
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # PASSIVE checkpoints run (observable; tests read it)
        self.threads = 0  # threads started so far
        self.reclaimed = 0  # free pages given back to the file system (observable)
        self._commits = 0  # since the last checkpoint (counted without a lock: an estimate)

    def wrote(self) -> None:
        """A connection of this process committed: a checkpoint is due every ``EVERY_COMMITS``."""
        self._commits += 1
        if self._commits >= EVERY_COMMITS:
            self._wake(self._due)

    def freed(self) -> None:
        """A delete committed: its free pages go back at the next checkpoint, or once idle."""
        self._wake(self._freed)

    def _wake(self, flag: threading.Event) -> None:
        """Set ``flag`` and see that a thread is alive to see it (at no cost if it is set)."""
        if flag.is_set():
            return
        with self._lock:
            if self._stop.is_set():
                return
            flag.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fluentfn-sqlite-checkpoint", daemon=True)
                self.threads += 1
                self._thread.start()

    def stop(self) -> None:
        """No checkpoints from now on (the store is closed or gone): the thread ends."""
        with self._lock:
            self._stop.set()
            self._due.set()

    def close(self) -> None:
        """``stop``, and wait for the thread to end."""
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=0.0, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            log.warning("%s: no checkpointer thread (%s); commits checkpoint the WAL themselves", self._path, exc)
            self.stop()
            return
        try:
            while True:
                due = self._due.wait(IDLE_S)
                if self._stop.is_set():
                    return
                if due:
                    self._due.clear()
                    self._commits = 0
                    # What it could not copy (commits that came meanwhile, frames a reader of an
                    # old snapshot still needs) waits for the next one: never a loop of syncs.
                    self._checkpoint(conn)
                if self._freed.is_set():
                    self._reclaim(conn)
                elif not due and self._ended():
                    return
        finally:
            conn.close()

    def _ended(self) -> bool:
        """After ``IDLE_S`` without a commit: end this thread, unless one came meanwhile."""
        with self._lock:
            if self._due.is_set() or self._freed.is_set():
                return False
            self._thread = None
            return True

    def _reclaim(self, conn: sqlite3.Connection) -> None:
        """Give the free pages beyond ``RECLAIM_MIN_PAGES`` back, in steps; then a
        checkpoint, which shrinks the file. A step that finds the write lock taken ends
        this turn and leaves the work to the next (``_freed`` is set again)."""
        self._freed.clear()
        try:
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # a file made before: keeps its pages
                return
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if free <= RECLAIM_MIN_PAGES:
                return
            while free > RECLAIM_MIN_PAGES and not self._stop.is_set():
                step = min(RECLAIM_STEP_PAGES, free - RECLAIM_MIN_PAGES)
                conn.executescript(f"PRAGMA incremental_vacuum({step});")  # (``execute`` frees one page)
                left = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
                if left >= free:  # writers took the pages meanwhile: nothing to give back
                    break
                self.reclaimed += free - left
                free = left
        except sqlite3.Error as exc:  # (the lock is taken; the file is gone: the next turn sees)
            log.debug("%s: free pages kept for now: %s", self._path, exc)
            with self._lock:
                if not self._stop.is_set():
                    self._freed.set()
            return
        self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """One PASSIVE checkpoint (skipped if another process's is running, or the file is gone)."""
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.OperationalError as exc:
            log.debug("%s: checkpoint skipped: %s", self._path, exc)
            return
        self.checkpoints += 1
