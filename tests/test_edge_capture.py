"""The capture thread and the frame slot: replay without loss, stale-frame dropping, trigger latching,
reconnect with backoff when a real (MJPEG over HTTP) camera goes away and comes back."""

import threading
import time

import numpy as np

from edge import config as C
from edge.capture import Capture, FrameSlot, Trigger
from edge.sources import Frame, create_source
from inspector.preprocess import ChannelOrder
from inspector.protocol.enums import CameraState
from tests.fixtures_edge import write_folder


def _frame(i: int) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), ChannelOrder.BGR, time.time(), i, str(i))


class States:
    def __init__(self):
        self.seen = []
        self.cond = threading.Condition()

    def __call__(self, state, reason):
        with self.cond:
            self.seen.append((state, reason))
            self.cond.notify_all()

    def wait(self, state, count=1, timeout=30.0):
        with self.cond:
            ok = self.cond.wait_for(lambda: sum(s == state for s, _ in self.seen) >= count, timeout)
        assert ok, f"never reached {state} x{count}: {self.seen}"


def _consume(slot, seconds_per_frame):
    """Take frames until the source ends, spending ``seconds_per_frame`` on each like a model would."""
    frames = []
    while not slot.finished:
        frame = slot.take(0.1)
        if frame is not None:
            frames.append(frame)
            time.sleep(seconds_per_frame)
    return frames


def test_continuous_slot_keeps_the_newest_and_counts_the_stale():
    slot = FrameSlot(triggered=False, live=True)
    for i in range(1, 4):
        slot.put(_frame(i))
    assert slot.take(0.1).index == 3
    assert slot.dropped == 2 and slot.captured == 3
    assert slot.take(0.01) is None


def test_paused_slot_does_not_count_drops():
    slot = FrameSlot(triggered=False, live=True)
    slot.set_paused(True)
    slot.put(_frame(1))
    slot.put(_frame(2))
    assert slot.dropped == 0


def test_live_trigger_latches_the_first_frame_after_it():
    slot = FrameSlot(triggered=True, live=True)
    slot.put(_frame(1))  # before any trigger: not for anyone
    first, second = Trigger("A"), Trigger("B")
    assert slot.arm(first) and slot.arm(second)
    slot.put(_frame(2))
    slot.put(_frame(3))
    got = [slot.take_triggered(0.1), slot.take_triggered(0.1)]
    assert [(t.part_id, t.frame.index) for t in got] == [("A", 2), ("B", 2)]
    assert slot.take_triggered(0.01) is None


def test_replay_trigger_takes_one_image_each_and_demand_drives_reading():
    slot = FrameSlot(triggered=True, live=False)
    assert not slot.wants_frame()
    slot.arm(Trigger("A"))
    slot.arm(Trigger("B"))
    assert slot.wants_frame()
    slot.put(_frame(1))
    slot.put(_frame(2))
    assert not slot.wants_frame()
    assert [(t.part_id, t.frame.index) for t in (slot.take_triggered(0.1), slot.take_triggered(0.1))] == [
        ("A", 1),
        ("B", 2),
    ]


def test_triggers_are_bounded_and_expire():
    slot = FrameSlot(triggered=True, live=True, max_pending=2)
    old = Trigger("old", at=time.time() - 10)
    assert slot.arm(old) and slot.arm(Trigger("new"))
    assert not slot.arm(Trigger("too many"))
    assert [t.part_id for t in slot.expire(time.time() - 5)] == ["old"]
    assert [t.part_id for t in slot.drain_armed()] == ["new"]


def test_replay_folder_is_inspected_completely_in_order(tmp_path):
    write_folder(tmp_path / "imgs", 12)
    cfg = C.FolderSource(path=tmp_path / "imgs")
    slot = FrameSlot(triggered=False, live=cfg.live)
    states = States()
    capture = Capture(create_source(cfg), cfg, slot, states)
    capture.start()
    refs = [frame.ref for frame in _consume(slot, 0.01)]  # a slow model must not make a replay skip images
    capture.stop()
    assert refs == [f"img_{i:04d}.png" for i in range(12)]
    assert slot.dropped == 0
    assert [s for s, _ in states.seen] == [CameraState.RUNNING, CameraState.ENDED]


def test_live_paced_source_drops_stale_frames_for_a_slow_consumer(tmp_path):
    write_folder(tmp_path / "imgs", 30)
    cfg = C.FolderSource(path=tmp_path / "imgs", fps=100)
    slot = FrameSlot(triggered=False, live=cfg.live)
    capture = Capture(create_source(cfg), cfg, slot, States())
    capture.start()
    taken = [frame.index for frame in _consume(slot, 0.05)]
    capture.stop()
    assert taken == sorted(taken) and len(taken) < 30
    assert slot.dropped > 0 and slot.dropped + len(taken) == slot.captured == 30


def test_lost_camera_is_reopened_with_backoff_and_reported(mjpeg_server):
    cfg = C.StreamSource(
        url=mjpeg_server.url,
        open_timeout_s=2,
        read_timeout_s=1,
        stall_timeout_s=2,
        reconnect_min_s=0.1,
        reconnect_max_s=0.4,
        read_errors_before_reconnect=1,
    )
    slot = FrameSlot(triggered=False, live=True)
    states = States()
    capture = Capture(create_source(cfg), cfg, slot, states)
    capture.start()
    try:
        states.wait(CameraState.RUNNING)
        mjpeg_server.stop()
        states.wait(CameraState.LOST)
        time.sleep(1.0)  # several failed reopen attempts
        assert capture.reconnects >= 2
        assert capture.state == CameraState.LOST
        mjpeg_server.start()
        states.wait(CameraState.RUNNING, count=2)
        assert slot.take(5.0) is not None
    finally:
        capture.stop()
    assert [s for s, _ in states.seen][:3] == [CameraState.RUNNING, CameraState.LOST, CameraState.RUNNING]


def test_camera_that_hangs_without_closing_is_declared_lost_after_the_stall_timeout(mjpeg_server):
    cfg = C.StreamSource(
        url=mjpeg_server.url, open_timeout_s=2, read_timeout_s=5, stall_timeout_s=0.5, reconnect_min_s=0.1
    )
    slot = FrameSlot(triggered=False, live=True)
    states = States()
    capture = Capture(create_source(cfg), cfg, slot, states)
    capture.start()
    try:
        states.wait(CameraState.RUNNING)
        mjpeg_server.stalled = True
        deadline = time.monotonic() + 10
        while capture.state != CameraState.LOST and time.monotonic() < deadline:
            capture.check_stall()  # the station loop does this; the capture thread is stuck in read()
            time.sleep(0.05)
        assert capture.state == CameraState.LOST and "no frame for" in capture.state_reason
        mjpeg_server.stalled = False
        states.wait(CameraState.RUNNING, count=2)
    finally:
        capture.stop()


def test_source_that_stays_lost_past_the_limit_fails(mjpeg_server):
    mjpeg_server.stop()
    cfg = C.StreamSource(
        url=mjpeg_server.url, open_timeout_s=1, reconnect_min_s=0.1, reconnect_max_s=0.2, give_up_after_s=0.5
    )
    states = States()
    capture = Capture(create_source(cfg), cfg, FrameSlot(False, True), states)
    capture.start()
    states.wait(CameraState.FAILED)
    capture.stop()
    assert "lost for more than" in states.seen[-1][1]


def test_misconfigured_source_fails_at_once(tmp_path):
    cfg = C.VideoSource(path=tmp_path / "missing.mp4")
    states = States()
    capture = Capture(create_source(cfg), cfg, FrameSlot(False, False), states)
    capture.start()
    states.wait(CameraState.FAILED)
    capture.stop()
    assert states.seen == [(CameraState.FAILED, f"video file {cfg.path} does not exist")]


def test_live_trigger_does_not_take_a_frame_read_before_it():
    """A frame read before the trigger arrived (and still being prepared when it did) is not its frame."""
    slot = FrameSlot(triggered=True, live=True)
    early = _frame(1)
    trigger = Trigger("A", at=early.captured_at + 0.001)
    assert slot.arm(trigger)
    assert not slot.wants_prepared(early)  # not prepared for nobody...
    slot.put(early)
    assert slot.take_triggered(0.01) is None  # ...and not latched
    late = Frame(early.image, ChannelOrder.BGR, trigger.at + 0.001, 2, "2")
    assert slot.wants_prepared(late)
    slot.put(late)
    assert slot.take_triggered(0.1).frame is late


def test_wants_prepared_follows_the_mode():
    continuous = FrameSlot(triggered=False, live=True)
    assert continuous.wants_prepared(_frame(1))  # every frame may be the one inspected
    replay = FrameSlot(triggered=True, live=False)
    assert not replay.wants_prepared(_frame(1))
    replay.arm(Trigger("A"))
    assert replay.wants_prepared(_frame(2))  # a replay frame is read for the oldest armed trigger


def test_triggered_capture_prepares_exactly_the_frames_triggers_take(tmp_path):
    """Preprocessing runs in the capture thread for a triggered frame, before the loop gets it."""
    write_folder(tmp_path / "imgs", 5)
    cfg = C.FolderSource(path=tmp_path / "imgs")
    slot = FrameSlot(triggered=True, live=cfg.live)
    prepared = []

    def prepare(frame):
        frame.prepared = frame.image[:2, :2].copy()
        prepared.append(frame.ref)

    capture = Capture(create_source(cfg), cfg, slot, States(), prepare=prepare)
    capture.start()
    try:
        taken = []
        for part in ("A", "B", "C"):
            assert slot.arm(Trigger(part))
            trigger = slot.take_triggered(10.0)
            assert trigger is not None and trigger.frame.prepared is not None
            taken.append(trigger.frame.ref)
    finally:
        capture.stop()
    assert taken == prepared == ["img_0000.png", "img_0001.png", "img_0002.png"]
