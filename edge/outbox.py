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

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List

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

    def __init__(self, path: str | Path, max_results: int = 100_000, on_full: str = "drop_oldest",
                 synchronous: str = "full"):
        if on_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"on_full must be drop_oldest or drop_newest, not {on_full!r}")
        self.path = Path(path)
        self.max_results = max_results
        self.on_full = on_full
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: explicit BEGIN/COMMIT, so each add is one durable transaction.
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
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
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                dropped = 0
                if self._depth >= self.max_results:
                    if self.on_full == "drop_newest":
                        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?)", (seq,))
                        self._db.execute("COMMIT")
                        self._last_seq = max(self._last_seq, seq)
                        return Enqueued(False, 1, self._depth)
                    excess = self._depth - self.max_results + 1
                    dropped = self._db.execute(
                        "DELETE FROM results WHERE rowid IN "
                        "(SELECT rowid FROM results WHERE state=0 ORDER BY rowid LIMIT ?)", (excess,)
                    ).rowcount
                self._db.execute(
                    "INSERT INTO results(result_id, seq, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
                    (result_id, seq, topic, payload, time.time()),
                )
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?)", (seq,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"{self.path}: cannot store result {result_id}: {exc}") from None
            self._depth += 1 - dropped
            self._last_seq = max(self._last_seq, seq)
            return Enqueued(True, dropped, self._depth)

    def pending(self, after: int = 0, limit: int = 100) -> List[Row]:
        """Queued results with ``rowid > after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, result_id, seq, topic, payload FROM results WHERE state=0 AND rowid>? "
                "ORDER BY rowid LIMIT ?", (after, limit),
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


def read_pending_ids(path: str | Path) -> List[str]:
    """Result ids still queued in an outbox file, read by another process (tools, tests, support)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=10.0)
    try:
        return [r[0] for r in db.execute("SELECT result_id FROM results WHERE state=0 ORDER BY rowid")]
    finally:
        db.close()
