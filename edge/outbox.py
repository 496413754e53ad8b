"""The durable outbox: every result is written before it is published, and leaves only when acknowledged.

A station on a factory network loses its broker (switch reboot, broker update, cable) and its power
(line stop, e-stop). Results are the product's output, so each one is committed to an SQLite database in
WAL mode before it is handed to MQTT and deleted only when the broker's PUBACK arrives. A restart, after a
clean stop, a crash or a power cut, sends whatever is still in the file. Delivery is therefore
at-least-once: the same result may arrive twice (its ``id`` lets consumers drop the repeat), never zero
times unless the bounded queue overflows, which is a reported event.

Group commit: a commit is a ``write()`` into the WAL file (``PRAGMA synchronous=NORMAL``), which a
process crash (SIGKILL, OOM kill) cannot undo: the data is in the operating system. Only a power cut
needs the disk sync, so results (and acknowledgements) are not made to wait for it. With
``synchronous="full"`` a background thread syncs the WAL at most ``group_commit_s`` after the oldest
unsynced commit, one sync for everything written meanwhile, and runs SQLite's checkpoints, so a writer
waits for the disk only once per WAL cycle (SQLite syncs the new WAL header in the first commit after a
checkpoint, every ``_Syncer.CHECKPOINT_COMMITS`` commits). A power cut can lose only the commits of the last group (at most ``group_commit_s``
plus one sync): results that were published but neither acknowledged nor synced, whose parts the line
controller rejects at its deadline. :meth:`Outbox.durability` reports how long commits actually stayed
unsynced (the power-cut window). ``synchronous="normal"`` leaves syncing to SQLite's checkpoints.

The queue is bounded (``max_results``). When full, ``drop_oldest`` deletes the oldest queued result to
make room (the line keeps the newest information), ``drop_newest`` refuses the new one; either way the
caller learns it from :class:`Enqueued` and the station publishes an ``outbox_full`` event.

The database also holds the last sequence number, written in the same transaction as the result, so
sequence numbers keep increasing across restarts without gaps caused by the station itself.

Example:
    >>> import tempfile, os
    >>> box = Outbox(os.path.join(tempfile.mkdtemp(), "o.sqlite"))
    >>> box.add("r1", box.last_seq + 1, "t/result", '{"seq": 1}').stored
    True
    >>> [row.result_id for row in box.pending()], box.depth()
    (['r1'], 1)
    >>> box.ack([box.pending()[0].rowid])
    1
    >>> box.sync(); box.durability().unsynced
    0
    >>> box.close()
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

PENDING = 0
REJECTED = 1
DEFAULT_GROUP_COMMIT_S = 0.05  # the power-cut window: commits wait at most this long for their disk sync
_BACKSTOP_CHECKPOINT_PAGES = 10_000  # a writer checkpoints only if the sync thread's checkpoints fall behind

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS results_state ON results(state, rowid);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or written (disk full, read-only, corrupt)."""


@dataclass(frozen=True)
class Row:
    rowid: int
    result_id: str
    seq: int
    topic: str
    payload: str


@dataclass(frozen=True)
class Enqueued:
    """What :meth:`Outbox.add` did: ``stored`` is False when the new result was refused (drop_newest)."""

    stored: bool
    dropped: int = 0  # results deleted (or refused) to respect the bound
    depth: int = 0


@dataclass(frozen=True)
class Durability:
    """How far the disk syncs trail the commits: what a power cut could take at this moment, and at worst."""

    syncs: int  # syncs of the WAL made by this outbox since it was opened
    unsynced: int  # commits written (safe from a crash) but not yet synced (lost by a power cut)
    max_unsynced_s: float  # longest time a commit waited for its sync: the power-cut window seen so far
    max_sync_s: float  # longest single sync


class Outbox:
    """A bounded, ordered, durable queue of outgoing results in one SQLite file. Thread-safe."""

    def __init__(
        self,
        path: str | Path,
        max_results: int = 100_000,
        on_full: str = "drop_oldest",
        synchronous: str = "full",
        group_commit_s: float = DEFAULT_GROUP_COMMIT_S,
    ):
        if on_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"on_full must be drop_oldest or drop_newest, not {on_full!r}")
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
        if group_commit_s <= 0:
            raise ValueError(f"group_commit_s must be positive, not {group_commit_s!r}")
        self.path = Path(path)
        self.max_results = max_results
        self.on_full = on_full
        self.synchronous = synchronous
        self.group_commit_s = group_commit_s
        self._lock = threading.Lock()
        self.error: Optional[OutboxError] = None  # set once a write or a sync failed; every later write raises it
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: explicit BEGIN/COMMIT, so each add is one transaction.
            self._db = self._connect()
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise OutboxError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            # The sync thread checkpoints; this is only the bound if it cannot keep up.
            self._db.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_CHECKPOINT_PAGES}")
            self._db.executescript(_SCHEMA)
            self._depth = self._db.execute("SELECT COUNT(*) FROM results WHERE state=0").fetchone()[0]
            row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
            stored_max = self._db.execute("SELECT MAX(seq) FROM results").fetchone()[0] or 0
            self._last_seq = max(row[0] if row else 0, stored_max)
            self._reader = self._connect()
            self._read_lock = threading.Lock()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: cannot open the outbox: {exc}") from None
        self._syncer = _Syncer(self) if synchronous == "full" else None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
        # NORMAL in WAL mode: a commit is a write() (safe from a crash), checkpoints sync the WAL and the
        # database before reusing the WAL (the file is never corrupted); the sync thread adds durability.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest result ever added (0 for a new outbox)."""
        return self._last_seq

    def depth(self) -> int:
        """Results waiting for an acknowledgement."""
        return self._depth

    def add(self, result_id: str, seq: int, topic: str, payload: str) -> Enqueued:
        """Commit one result (and ``seq`` as the last sequence number) in a single transaction."""
        return self.add_many([(result_id, seq, topic, payload)])

    def add_many(self, items: Sequence[Tuple[str, int, str, str]]) -> Enqueued:
        """Commit ``(result_id, seq, topic, payload)`` items in one transaction.

        On return the rows survive a crash of this process and may be published; the sync thread makes
        them survive a power cut within ``group_commit_s``. The bound applies as if they were added one
        by one: ``drop_oldest`` deletes the oldest queued results to make room (of a batch larger than
        the bound, only its newest are kept), ``drop_newest`` stores what fits and refuses the rest.
        """
        if not items:
            return Enqueued(True, 0, self._depth)
        last = max(seq for _, seq, _, _ in items)
        with self._lock:
            if self.error is not None:
                raise self.error
            try:
                self._db.execute("BEGIN IMMEDIATE")
                deleted = 0
                if self.on_full == "drop_newest":
                    keep = list(items[: max(self.max_results - self._depth, 0)])
                else:
                    keep = list(items[-self.max_results :])
                    excess = self._depth + len(keep) - self.max_results
                    if excess > 0:
                        deleted = self._db.execute(
                            "DELETE FROM results WHERE rowid IN "
                            "(SELECT rowid FROM results WHERE state=0 ORDER BY rowid LIMIT ?)",
                            (excess,),
                        ).rowcount
                now = time.time()
                self._db.executemany(
                    "INSERT INTO results(result_id, seq, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
                    [(result_id, seq, topic, payload, now) for result_id, seq, topic, payload in keep],
                )
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?)", (last,))
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:  # a repeated id: this result is refused, the outbox works
                self._rollback()
                raise OutboxError(f"{self.path}: cannot store result {items[0][0]}: {exc}") from None
            except sqlite3.Error as exc:  # disk full, I/O error: nothing later can be stored either
                self._rollback()
                raise self._failed(f"cannot store result {items[0][0]}: {exc}") from None
            self._committed()
            self._depth += len(keep) - deleted
            self._last_seq = max(self._last_seq, last)
            return Enqueued(len(keep) == len(items), deleted + len(items) - len(keep), self._depth)

    def pending(self, after: int = 0, limit: int = 100) -> List[Row]:
        """Queued results with ``rowid > after``, oldest first (read on a connection of its own: WAL lets it
        run while a writer commits, so the drain never waits for a commit to publish the previous one)."""
        with self._read_lock:
            try:
                rows = self._reader.execute(
                    "SELECT rowid, result_id, seq, topic, payload FROM results WHERE state=0 AND rowid>? "
                    "ORDER BY rowid LIMIT ?",
                    (after, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot read queued results: {exc}") from None
        return [Row(*r) for r in rows]

    def ack(self, rowids: Iterable[int]) -> int:
        """Delete acknowledged results in one transaction (synced with the next group); returns how many
        were still there. A power cut before that sync only makes them go out again (a duplicate)."""
        ids = [(int(r),) for r in rowids]
        if not ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.executemany("DELETE FROM results WHERE rowid=? AND state=0", ids)
                removed = self._db.total_changes - before
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"{self.path}: cannot delete acknowledged results: {exc}") from None
            self._committed()
            self._depth -= removed
            return removed

    def reject(self, rowid: int, reason: str) -> None:
        """Keep a result the broker refused (negative PUBACK) for inspection, but stop sending it."""
        with self._lock:
            try:
                changed = self._db.execute(
                    "UPDATE results SET state=?, reason=? WHERE rowid=? AND state=0", (REJECTED, reason, rowid)
                ).rowcount
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot set result {rowid} aside: {exc}") from None
            self._committed()
            self._depth -= changed

    def rejected(self) -> List[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, result_id, seq, topic, payload FROM results WHERE state=? ORDER BY rowid",
                (REJECTED,),
            ).fetchall()
        return [Row(*r) for r in rows]

    def sync(self) -> None:
        """Make every commit made so far survive a power cut now (the sync thread does this by itself)."""
        if self._syncer is not None:
            self._syncer.sync()

    def durability(self) -> Durability:
        """The sync thread's figures (all zero with ``synchronous="normal"``, which has no sync thread)."""
        if self._syncer is None:
            return Durability(0, 0, 0.0, 0.0)
        return self._syncer.figures()

    def _committed(self) -> None:
        if self._syncer is not None:
            self._syncer.written()

    def _failed(self, message: str) -> OutboxError:
        """Remember the first failure: a station that cannot write its outbox must stop (exit code 5)."""
        error = OutboxError(f"{self.path}: {message}")
        if self.error is None:
            self.error = error
        return error

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Sync what was written, checkpoint the WAL into the database, close the file."""
        if self._syncer is not None:
            self._syncer.close()
        with self._read_lock:
            self._reader.close()
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()


class _Syncer:
    """The group commit: syncs the outbox's WAL in the background, one sync per group of commits.

    The WAL is synced through a file descriptor of its own (``fdatasync``), without any SQLite lock, so
    writers keep appending while the disk works; a commit counts as synced when it completed before the
    sync started. SQLite's checkpoints (which sync twice and copy pages into the database) run here too,
    every ``CHECKPOINT_COMMITS`` commits (a WAL of about 25 MB), instead of in a writer's commit. What stays
    in the writer: after a complete checkpoint, SQLite restarts the WAL from its start and syncs the new
    WAL header in the next commit (its protection against out-of-order writes), one sync per WAL cycle;
    checkpointing rarely keeps that rare.
    """

    CHECKPOINT_COMMITS = 1500

    def __init__(self, outbox: Outbox):
        self._outbox = outbox
        self._wal = Path(f"{outbox.path}-wal")
        self._fd: Optional[int] = None
        self._marks = threading.Lock()  # the counters below, shared by writers and the sync thread
        self._commits = 0  # commits written since open
        self._synced = 0  # of which synced
        self._oldest: Optional[float] = None  # monotonic time of the oldest unsynced commit
        self._syncs = 0
        self._max_unsynced_s = 0.0
        self._max_sync_s = 0.0
        self._one_at_a_time = threading.Lock()  # the thread and close() never sync at once
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._checkpointed = 0  # commits at the last checkpoint
        try:
            self._checkpoint_db = outbox._connect()
        except sqlite3.Error as exc:
            raise OutboxError(f"{outbox.path}: cannot open the outbox: {exc}") from None
        self._thread = threading.Thread(target=self._run, name="outbox-sync", daemon=True)
        self._thread.start()

    def written(self) -> None:
        """A writer committed (under the outbox lock): it is safe from a crash, due for the next sync."""
        with self._marks:
            self._commits += 1
            if self._oldest is None:
                self._oldest = time.monotonic()
        self._dirty.set()

    def figures(self) -> Durability:
        with self._marks:
            return Durability(self._syncs, self._commits - self._synced, self._max_unsynced_s, self._max_sync_s)

    def sync(self) -> None:
        with self._one_at_a_time:
            with self._marks:
                target, since = self._commits, self._oldest
                self._oldest = None
                self._dirty.clear()
            if since is None:
                return
            start = time.monotonic()
            try:
                _datasync(self._wal_fd())
            except OSError as exc:
                # After a failed sync the kernel may have dropped the pages: nothing written can be trusted
                # to reach the disk, so the outbox refuses further writes and the station stops.
                raise self._outbox._failed(f"cannot sync the outbox to disk: {exc}") from None
            end = time.monotonic()
            with self._marks:
                self._synced = max(self._synced, target)
                self._syncs += 1
                self._max_unsynced_s = max(self._max_unsynced_s, end - since)
                self._max_sync_s = max(self._max_sync_s, end - start)

    def _wal_fd(self) -> int:
        """A descriptor of the current WAL file (reopened if SQLite replaced the file)."""
        try:
            if self._fd is not None and os.fstat(self._fd).st_ino == os.stat(self._wal).st_ino:
                return self._fd
        except FileNotFoundError:
            pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:  # no WAL: everything is in the database file
            fd = os.open(self._outbox.path, os.O_RDONLY)
        self._fd = fd
        _sync_directory(self._wal.parent)  # a WAL created since is found after a power cut
        return fd

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._dirty.wait()
                with self._marks:
                    since = self._oldest
                if since is not None:
                    self._stop.wait(max(since + self._outbox.group_commit_s - time.monotonic(), 0.0))
                    self.sync()
                if self._commits - self._checkpointed >= self.CHECKPOINT_COMMITS:
                    self._checkpoint()
        except OutboxError as exc:
            log.error("%s", exc)
        except Exception:  # the sync thread must not die silently: the station stops on outbox.error
            log.exception("outbox sync thread failed")
            self._outbox._failed("the outbox sync thread failed")

    def _checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: never blocks a writer) so the WAL stays small."""
        self._checkpointed = self._commits
        try:
            self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("outbox checkpoint failed (retried after %d commits): %s", self.CHECKPOINT_COMMITS, exc)

    def close(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._thread.join(30.0)
        try:
            self.sync()
        except OutboxError as exc:
            log.error("%s", exc)
        self._checkpoint_db.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _datasync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _sync_directory(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the file's own sync still holds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class OutboxWriter:
    """Commits results on its own thread, all those queued since the last commit in one transaction.

    The inspection loop only queues a result here (:meth:`submit`); this thread commits everything queued
    meanwhile in one transaction and then calls ``on_committed``, which wakes the publisher. A commit no
    longer waits for the disk (the outbox's sync thread does, for a whole group), so a result is published
    as soon as it is written: safe from a crash of the process at once, from a power cut within the
    outbox's ``group_commit_s``.
    """

    def __init__(
        self, outbox: Outbox, on_committed: Callable[[Enqueued], None], max_batch: int = 256, max_queued: int = 1000
    ):
        self.outbox = outbox
        self._on_committed = on_committed
        self._max_batch = max_batch
        # Bounded: a stalled disk slows the inspection loop down instead of filling memory.
        self._queue: queue.Queue[Optional[Tuple[str, int, str, str]]] = queue.Queue(maxsize=max_queued)
        self.error: Optional[OutboxError] = None
        self._thread = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._thread.start()

    def submit(self, result_id: str, seq: int, topic: str, payload: str) -> None:
        """Queue one result for the next commit; raises the writer's :class:`OutboxError` once it failed."""
        item = (result_id, seq, topic, payload)
        while True:
            if self.error is not None:
                raise self.error
            if self.outbox.error is not None:  # e.g. a failed disk sync
                raise self.outbox.error
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                batch.append(item)
            try:
                enqueued = self.outbox.add_many(batch)
            except OutboxError as exc:
                self.error = exc
                return
            try:
                self._on_committed(enqueued)
            except Exception:  # a failing callback must not stop the commits
                log.exception("outbox writer callback failed")

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(max(deadline - time.monotonic(), 0.0))


def read_pending_ids(path: str | Path) -> List[str]:
    """Result ids still queued in an outbox file, read by another process (tools, tests, support)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=10.0)
    try:
        return [r[0] for r in db.execute("SELECT result_id FROM results WHERE state=0 ORDER BY rowid")]
    finally:
        db.close()
