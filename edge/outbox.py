"""The durable outbox: every result is on disk before it is published, and leaves only when acknowledged.

A station on a factory network loses its broker (switch reboot, broker update, cable) and its power
(line stop, e-stop). Results are the product's output, so each one is committed to an SQLite database in
WAL mode before it is handed to MQTT and deleted only when the broker's PUBACK arrives. A restart, after a
clean stop, a crash or a power cut, sends whatever is still in the file. Delivery is therefore
at-least-once: the same result may arrive twice (its ``id`` lets consumers drop the repeat), never zero
times unless the bounded queue overflows, which is a reported event.

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
"""

from __future__ import annotations

import logging
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


class Outbox:
    """A bounded, ordered, durable queue of outgoing results in one SQLite file. Thread-safe."""

    def __init__(
        self, path: str | Path, max_results: int = 100_000, on_full: str = "drop_oldest", synchronous: str = "full"
    ):
        if on_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"on_full must be drop_oldest or drop_newest, not {on_full!r}")
        self.path = Path(path)
        self.max_results = max_results
        self.on_full = on_full
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: explicit BEGIN/COMMIT, so each add is one durable transaction.
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise OutboxError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            self._depth = self._db.execute("SELECT COUNT(*) FROM results WHERE state=0").fetchone()[0]
            row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
            stored_max = self._db.execute("SELECT MAX(seq) FROM results").fetchone()[0] or 0
            self._last_seq = max(row[0] if row else 0, stored_max)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: cannot open the outbox: {exc}") from None

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
        """Commit ``(result_id, seq, topic, payload)`` items in one transaction: one disk sync for all.

        The bound applies as if they were added one by one: ``drop_oldest`` deletes the oldest queued
        results to make room (of a batch larger than the bound, only its newest are kept),
        ``drop_newest`` stores what fits and refuses the rest.
        """
        if not items:
            return Enqueued(True, 0, self._depth)
        last = max(seq for _, seq, _, _ in items)
        with self._lock:
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
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"{self.path}: cannot store result {items[0][0]}: {exc}") from None
            self._depth += len(keep) - deleted
            self._last_seq = max(self._last_seq, last)
            return Enqueued(len(keep) == len(items), deleted + len(items) - len(keep), self._depth)

    def pending(self, after: int = 0, limit: int = 100) -> List[Row]:
        """Queued results with ``rowid > after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, result_id, seq, topic, payload FROM results WHERE state=0 AND rowid>? "
                "ORDER BY rowid LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Row(*r) for r in rows]

    def ack(self, rowids: Iterable[int]) -> int:
        """Delete acknowledged results; returns how many were still there."""
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
            self._depth -= removed
            return removed

    def reject(self, rowid: int, reason: str) -> None:
        """Keep a result the broker refused (negative PUBACK) for inspection, but stop sending it."""
        with self._lock:
            changed = self._db.execute(
                "UPDATE results SET state=?, reason=? WHERE rowid=? AND state=0", (REJECTED, reason, rowid)
            ).rowcount
            self._depth -= changed

    def rejected(self) -> List[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, result_id, seq, topic, payload FROM results WHERE state=? ORDER BY rowid",
                (REJECTED,),
            ).fetchall()
        return [Row(*r) for r in rows]

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()


class OutboxWriter:
    """Commits results on its own thread, all those queued since the last commit in one transaction.

    With ``synchronous=full`` a commit waits for the disk (milliseconds, more on an SD card), and the
    drain thread's acknowledgements hold the same lock; in the inspection loop both waits came out of
    every frame. The loop now only queues a result here (:meth:`submit`); this thread commits (group
    commit: one sync for everything queued meanwhile) and then calls ``on_committed``, which wakes the
    publisher. A result is still on disk before it is published; what a power cut can lose grows from
    the frame being inspected to the few results of the commit in progress.
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
