"""The durable outbox: order, acknowledgement, bounds, sequence numbers, and surviving a killed process."""

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge.outbox import Outbox, OutboxError, read_pending_ids

ROOT = Path(__file__).resolve().parents[1]


def _fill(box: Outbox, n: int, start: int = 1):
    for seq in range(start, start + n):
        box.add(f"id{seq}", seq, "t/result", f'{{"seq": {seq}}}')


def test_rows_come_out_in_order_and_leave_only_when_acked(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    _fill(box, 5)
    rows = box.pending(limit=3)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert [r.seq for r in box.pending(after=rows[-1].rowid)] == [4, 5]
    assert box.ack([rows[0].rowid, rows[2].rowid]) == 2
    assert [r.seq for r in box.pending()] == [2, 4, 5]
    assert box.depth() == 3
    assert box.ack([rows[0].rowid]) == 0  # acknowledging twice is harmless
    assert box.depth() == 3


def test_wal_mode_and_contents_survive_reopening(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    _fill(box, 3)
    box.ack([box.pending()[0].rowid])
    box.close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again = Outbox(path)
    assert [r.result_id for r in again.pending()] == ["id2", "id3"]
    assert again.last_seq == 3 and again.depth() == 2


def test_sequence_number_survives_even_when_the_queue_is_empty(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    _fill(box, 4)
    box.ack(r.rowid for r in box.pending())
    box.close()
    assert Outbox(path).last_seq == 4


def test_drop_oldest_keeps_the_newest_and_reports_it(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_results=10, on_full="drop_oldest")
    _fill(box, 10)
    queued = box.add("id11", 11, "t/result", "{}")
    assert queued.stored and queued.dropped == 1 and queued.depth == 10
    assert [r.seq for r in box.pending()] == list(range(2, 12))


def test_drop_newest_refuses_new_results_but_keeps_counting_seq(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_results=10, on_full="drop_newest")
    _fill(box, 10)
    queued = box.add("id11", 11, "t/result", "{}")
    assert not queued.stored and queued.dropped == 1
    assert [r.seq for r in box.pending()] == list(range(1, 11))
    assert box.last_seq == 11


def test_rejected_results_are_kept_apart_and_not_resent(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    _fill(box, 2)
    first = box.pending()[0]
    box.reject(first.rowid, "not authorized")
    assert [r.seq for r in box.pending()] == [2]
    assert [r.seq for r in box.rejected()] == [1]
    assert box.depth() == 1


def test_duplicate_result_id_is_an_error(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    box.add("same", 1, "t", "{}")
    with pytest.raises(OutboxError, match="same"):
        box.add("same", 2, "t", "{}")
    assert box.depth() == 1


def test_unusable_path_is_an_outbox_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError):
        Outbox(blocker / "o.sqlite")


def test_results_committed_before_sigkill_are_still_there(tmp_path):
    """A writer killed without any cleanup (as by SIGKILL or a power cut) loses nothing it committed."""
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from edge.outbox import Outbox
        box = Outbox({str(path)!r})
        for seq in range(1, 51):
            box.add(f"id{{seq}}", seq, "t/result", "{{}}")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9
    assert read_pending_ids(path) == [f"id{i}" for i in range(1, 51)]
    assert Outbox(path).last_seq == 50


def test_writer_commits_in_order_and_reports_each_commit(tmp_path):
    from edge.outbox import OutboxWriter

    box = Outbox(tmp_path / "o.sqlite", max_results=50)
    commits = []
    writer = OutboxWriter(box, commits.append)
    for seq in range(1, 201):
        writer.submit(f"id{seq}", seq, "t/result", "{}")
    writer.close()
    assert [r.seq for r in box.pending(limit=100)] == list(range(151, 201))  # bound applied in order
    assert sum(c.dropped for c in commits) == 150 and box.last_seq == 200
    assert 1 <= len(commits) <= 200


def test_writer_failure_reaches_the_inspection_loop(tmp_path):
    from edge.outbox import OutboxWriter

    box = Outbox(tmp_path / "o.sqlite")
    writer = OutboxWriter(box, lambda queued: None)
    writer.submit("same", 1, "t", "{}")
    writer.submit("same", 2, "t", "{}")  # a duplicate id makes the commit fail
    deadline = time.monotonic() + 30
    with pytest.raises(OutboxError):
        seq = 3
        while time.monotonic() < deadline:  # the next submit after the failed commit raises
            writer.submit(f"id{seq}", seq, "t", "{}")
            seq += 1
            time.sleep(0.01)
    writer.close()


def test_a_commit_is_readable_at_once_and_one_sync_covers_the_whole_group(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", group_commit_s=3600)  # no sync by the thread during the test
    _fill(box, 20)
    box.ack([box.pending()[0].rowid])  # acknowledgements join the same group
    assert box.depth() == 19 and read_pending_ids(tmp_path / "o.sqlite")[0] == "id2"  # written, not synced
    before = box.durability()
    assert before.syncs == 0 and before.unsynced == 21
    box.sync()
    after = box.durability()
    assert after.syncs == 1 and after.unsynced == 0 and after.max_unsynced_s > 0
    box.sync()  # nothing new: no sync
    assert box.durability().syncs == 1
    box.close()


def test_the_sync_thread_syncs_by_itself_and_normal_mode_has_none(tmp_path):
    box = Outbox(tmp_path / "full.sqlite", group_commit_s=0.01)
    _fill(box, 3)
    deadline = time.monotonic() + 30
    while box.durability().unsynced:
        assert time.monotonic() < deadline, "the sync thread never synced"
        time.sleep(0.01)
    assert box.durability().syncs >= 1
    box.close()
    normal = Outbox(tmp_path / "normal.sqlite", synchronous="normal")
    _fill(normal, 3)
    assert normal.durability().syncs == 0 and normal.durability().unsynced == 0  # nothing tracked
    normal.close()


@pytest.mark.parametrize(
    "kwargs, key", [({"group_commit_s": 0}, "group_commit_s"), ({"synchronous": "off"}, "synchronous")]
)
def test_bad_durability_settings_are_refused(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        Outbox(tmp_path / "o.sqlite", **kwargs)


def test_a_full_disk_stops_the_writes_and_keeps_every_result_it_stored(tmp_path):
    """The process may not grow a file past 1 MB (as on a full disk): the outbox fails loudly, loses nothing
    it reported stored, refuses every later result, and the file opens intact afterwards."""
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from edge.outbox import Outbox, OutboxError
        box = Outbox({str(path)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, resource.RLIM_INFINITY))
        stored = 0
        try:
            while stored < 100_000:
                box.add(f"id{{stored + 1}}", stored + 1, "t/result", "x" * 2000)
                stored += 1
        except OutboxError as exc:
            print("full after", stored, exc, file=sys.stderr)
        else:
            sys.exit("the outbox never noticed the full disk")
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        try:
            box.add("late", stored + 1, "t/result", "{{}}")
        except OutboxError:  # the first failure stays: the station stops with exit code 5
            print(stored, box.last_seq)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    stored, last_seq = map(int, proc.stdout.split())
    assert 10 < stored < 100_000 and last_seq == stored
    assert read_pending_ids(path) == [f"id{i}" for i in range(1, stored + 1)]
    again = Outbox(path)
    assert again.last_seq == stored and again.depth() == stored
    again.close()
