"""Frame source plugins on real inputs: image folders, video files, an HTTP MJPEG camera, GStreamer, USB."""

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import config as C
from edge.sources import (
    BadFrame,
    EndOfSource,
    SeenFiles,
    SourceConfigError,
    SourceError,
    create_source,
    gstreamer_available,
    gstreamer_pipeline,
    source_types,
)
from inspector.preprocess import ChannelOrder
from tests.fixtures_edge import StationThread, read_level, station_config, write_folder, write_video


def _read_all(source, limit=1000):
    frames = []
    source.open()
    try:
        while len(frames) < limit:
            frames.append(source.read())
    except EndOfSource:
        pass
    finally:
        source.close()
    return frames


def test_every_config_type_has_a_plugin():
    union_types = {
        model.model_fields["type"].default
        for model in (C.UsbSource, C.GStreamerSource, C.StreamSource, C.VideoSource, C.FolderSource)
    }
    assert set(source_types()) == union_types


def test_folder_delivers_images_in_sorted_order_as_rgb_then_ends(tmp_path):
    write_folder(tmp_path / "imgs", 5, start=3)
    write_folder(tmp_path / "imgs", 3, start=0)
    frames = _read_all(create_source(C.FolderSource(path=tmp_path / "imgs")))
    assert [f.ref for f in frames] == [f"img_{i:04d}.png" for i in range(8)]
    assert [f.index for f in frames] == list(range(1, 9))
    assert all(f.order == ChannelOrder.RGB and f.image.shape == (48, 64, 3) for f in frames)
    assert [read_level(f.image) for f in frames] == [10 + 10 * i for i in range(8)]


def test_folder_loop_starts_again(tmp_path):
    write_folder(tmp_path / "imgs", 3)
    frames = _read_all(create_source(C.FolderSource(path=tmp_path / "imgs", loop=True)), limit=7)
    assert [f.ref for f in frames] == [f"img_{i % 3:04d}.png" for i in range(7)]


def test_folder_skips_a_corrupt_file_with_a_reason(tmp_path):
    write_folder(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "img_0000b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    source = create_source(C.FolderSource(path=tmp_path / "imgs"))
    source.open()
    assert source.read().ref == "img_0000.png"
    with pytest.raises(BadFrame, match="img_0000b.png.*truncated PNG"):
        source.read()
    assert source.read().ref == "img_0001.png"
    with pytest.raises(EndOfSource):
        source.read()


def test_watched_folder_takes_new_files_once_they_are_complete(tmp_path):
    folder = tmp_path / "hot"
    folder.mkdir()
    source = create_source(C.FolderSource(path=folder, watch=True, poll_s=0.05))
    source.open()
    assert source.read() is None  # nothing yet: not the end of a watched folder
    write_folder(folder, 2)
    frames = []
    deadline = time.monotonic() + 10
    while len(frames) < 2 and time.monotonic() < deadline:
        frame = source.read()
        if frame is not None:
            frames.append(frame)
    assert [f.ref for f in frames] == ["img_0000.png", "img_0001.png"]
    write_folder(folder, 1, start=2)
    frame = None
    while frame is None and time.monotonic() < deadline:
        frame = source.read()
    assert frame.ref == "img_0002.png"


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()], ids=["missing", "empty"])
def test_folder_that_cannot_work_is_a_config_error(tmp_path, make):
    make(tmp_path / "x")
    with pytest.raises(SourceConfigError):
        create_source(C.FolderSource(path=tmp_path / "x")).open()


def test_video_file_every_frame_in_order_then_end_or_loop(tmp_path):
    path = write_video(tmp_path / "clip.avi", 6)
    frames = _read_all(create_source(C.VideoSource(path=path)))
    assert [f.ref for f in frames] == [f"clip.avi#{i}" for i in range(6)]
    assert all(f.order == ChannelOrder.BGR for f in frames)
    levels = [read_level(f.image) for f in frames]
    assert all(abs(level - (10 + 10 * i)) <= 3 for i, level in enumerate(levels)), levels
    looped = _read_all(create_source(C.VideoSource(path=path, loop=True)), limit=9)
    assert [f.ref for f in looped][5:8] == ["clip.avi#5", "clip.avi#0", "clip.avi#1"]


def test_missing_video_is_a_config_error(tmp_path):
    with pytest.raises(SourceConfigError, match="does not exist"):
        create_source(C.VideoSource(path=tmp_path / "none.mp4")).open()


def test_paced_video_is_live_and_keeps_its_rate(tmp_path):
    path = write_video(tmp_path / "clip.avi", 4)
    cfg = C.VideoSource(path=path, fps=20)
    assert cfg.live and not C.VideoSource(path=path).live
    source = create_source(cfg)
    source.open()
    frames = [source.read() for _ in range(4)]
    source.close()
    gaps = [b.captured_at - a.captured_at for a, b in zip(frames, frames[1:])]
    assert min(gaps) > 0.02  # paced, not read as fast as possible


def test_mjpeg_stream_reads_frames_and_fails_when_the_camera_goes(mjpeg_server):
    source = create_source(C.StreamSource(url=mjpeg_server.url, open_timeout_s=3, read_timeout_s=1))
    assert source.live
    source.open()
    frames = [source.read() for _ in range(3)]
    assert all(f.order == ChannelOrder.BGR and f.image.shape == (48, 64, 3) for f in frames)
    mjpeg_server.stop()
    with pytest.raises(SourceError):
        for _ in range(50):  # frames already buffered may still come out first
            source.read()
    source.close()
    with pytest.raises(SourceError, match="cannot open"):
        source.open()


def test_stream_description_hides_credentials():
    source = create_source(C.StreamSource(url="rtsp://admin:secret@10.0.0.5:554/stream1"))
    assert "secret" not in source.describe() and "10.0.0.5" in source.describe()


def test_gstreamer_without_support_fails_with_the_fix():
    line = next(l for l in cv2.getBuildInformation().splitlines() if l.strip().startswith("GStreamer:"))
    assert gstreamer_available() == ("YES" in line)
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    source = create_source(C.GStreamerSource(preset="jetson_csi"))
    with pytest.raises(SourceConfigError) as info:
        source.open()
    message = str(info.value)
    assert "without GStreamer" in message and "python3-opencv" in message and "JetPack" in message


def test_gstreamer_presets_are_complete_pipelines():
    jetson = gstreamer_pipeline(C.GStreamerSource(preset="jetson_csi", sensor_id=1, width=1920, height=1080))
    assert jetson.startswith("nvarguscamerasrc sensor-id=1 ") and "width=1920" in jetson
    assert jetson.endswith("appsink drop=true max-buffers=1 sync=false")
    pi = gstreamer_pipeline(C.GStreamerSource(preset="rpi_libcamera"))
    assert pi.startswith("libcamerasrc ") and "format=BGR" in pi
    custom = "videotestsrc ! videoconvert ! appsink"
    assert gstreamer_pipeline(C.GStreamerSource(pipeline=custom)) == custom


def test_usb_camera_that_is_not_there_is_retried_not_fatal():
    source = create_source(C.UsbSource(index=63))
    with pytest.raises(SourceError) as info:
        source.open()
    assert not isinstance(info.value, SourceConfigError)


# -- hot folder (issue 16 item 7): a file still being written, a truncated read, a restart --------------------


def _png(seed: int = 0) -> bytes:
    """A noisy 96x96 PNG (large enough that half of it is a truncated file)."""
    image = np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _slow_write(path: Path, data: bytes, pause_s: float = 1.5) -> threading.Thread:
    """A writer that stops for ``pause_s`` halfway through the file (a camera or a network copy)."""

    def write():
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(pause_s)
            fh.write(data[len(data) // 2 :])

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _frames(source, until, timeout: float = 20.0) -> tuple:
    """Read until ``until(frames)`` holds; returns (frames, BadFrame reasons)."""
    frames, bad = [], []
    deadline = time.monotonic() + timeout
    while not until(frames) and time.monotonic() < deadline:
        try:
            frame = source.read()
        except BadFrame as exc:
            bad.append(str(exc))
            continue
        if frame is not None:
            frames.append(frame)
    return frames, bad


def _decoded(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_watched_file_is_read_only_after_it_has_settled(tmp_path):
    data = _png()
    source = create_source(C.FolderSource(path=tmp_path, watch=True, poll_s=0.05, settle_s=2.0))
    source.open()
    writer = _slow_write(tmp_path / "part.png", data)
    frames, bad = _frames(source, lambda f: len(f) == 1)
    writer.join()
    assert bad == [] and len(frames) == 1
    assert np.array_equal(frames[0].image, _decoded(data))
    stat = (tmp_path / "part.png").stat()
    assert frames[0].key == f"part.png|{stat.st_size}|{stat.st_mtime_ns}"


def test_a_truncated_read_is_retried_not_reported(tmp_path):
    data = _png(1)
    source = create_source(C.FolderSource(path=tmp_path, watch=True, poll_s=0.05, settle_s=0.3, retries=3))
    source.open()
    writer = _slow_write(tmp_path / "part.png", data)  # pauses longer than settle_s: read half-written once
    frames, bad = _frames(source, lambda f: len(f) == 1)
    writer.join()
    assert bad == [] and len(frames) == 1
    assert np.array_equal(frames[0].image, _decoded(data))
    assert _frames(source, lambda f: False, timeout=1.0) == ([], [])  # not delivered twice


def test_a_file_that_stays_truncated_is_reported_once_after_the_retries(tmp_path):
    (tmp_path / "broken.png").write_bytes(_png()[:500])
    source = create_source(C.FolderSource(path=tmp_path, watch=True, poll_s=0.05, settle_s=0.1, retries=2))
    source.open()
    frames, bad = _frames(source, lambda f: False, timeout=2.0)
    assert frames == [] and len(bad) == 1 and "broken.png: truncated PNG" in bad[0]


def test_a_restart_inspects_only_new_or_changed_files(tmp_path):
    folder, state = tmp_path / "hot", tmp_path / "state"
    write_folder(folder, 3)
    cfg = C.FolderSource(path=folder, watch=True, poll_s=0.05, settle_s=0.1)
    first = create_source(cfg, state_dir=state)
    first.open()
    frames, _ = _frames(first, lambda f: len(f) == 3)
    assert [f.ref for f in frames] == ["img_0000.png", "img_0001.png", "img_0002.png"]
    for frame in frames[:2]:
        first.done(frame)  # the station queued these results; img_0002 was read but not finished
    first.close()
    assert (state / SeenFiles.FILE_NAME).is_file()

    write_folder(folder, 1, start=3)
    time.sleep(0.01)
    (folder / "img_0000.png").write_bytes((folder / "img_0001.png").read_bytes())  # replaced: a new part
    again = create_source(cfg, state_dir=state)
    again.open()
    frames, _ = _frames(again, lambda f: len(f) == 3)
    assert sorted(f.ref for f in frames) == ["img_0000.png", "img_0002.png", "img_0003.png"]
    assert _frames(again, lambda f: False, timeout=0.5)[0] == []


def test_video_frames_carry_a_stable_key(tmp_path):
    path = write_video(tmp_path / "clip.avi", 3)
    keys = [[f.key for f in _read_all(create_source(C.VideoSource(path=path)))] for _ in range(2)]
    stat = path.stat()
    assert keys[0] == keys[1] == [f"clip.avi|{stat.st_size}|{stat.st_mtime_ns}#{i}" for i in range(3)]


def test_station_restart_does_not_inspect_the_hot_folder_again(shared_broker, tmp_path, int8_bundle):
    folder = tmp_path / "hot"
    write_folder(folder, 3)
    source = {"type": "folder", "path": str(folder), "watch": True, "poll_s": 0.05, "settle_s": 0.1}
    cfg = station_config(shared_broker, tmp_path / "state", int8_bundle, source)
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/result"])

    station = StationThread(cfg).start()
    rec.wait_for(lambda r: len(r.results()) == 3, what="three results")
    station.stop()
    write_folder(folder, 1, start=3)
    station = StationThread(cfg).start()
    rec.wait_for(lambda r: len(r.results()) == 4, what="the new file's result")
    time.sleep(1.0)  # time for a wrong re-inspection of the old files to show up
    station.stop()
    results = rec.results()
    assert [r["frame"] for r in results] == [f"img_{i:04d}.png" for i in range(4)]
    for r in results:
        stat = (folder / r["frame"]).stat()
        assert r["source_key"] == f"{r['frame']}|{stat.st_size}|{stat.st_mtime_ns}"
    rec.close()


def test_paced_video_drops_the_frames_a_late_reader_missed(tmp_path):
    """A replay paced like a camera stays on real time: a reader that comes back late gets the frame of
    now, not the next one in the file (the demo's station on a loaded machine fell seconds behind)."""
    path = write_video(tmp_path / "clip.avi", 200)
    source = create_source(C.VideoSource(path=path, fps=20))
    source.open()
    first = source.read()
    time.sleep(0.33)  # about 6 frame periods
    late = source.read()
    on_time = source.read()
    source.close()
    assert first.ref == "clip.avi#0"
    assert int(late.ref.rpartition("#")[2]) >= 5
    assert int(on_time.ref.rpartition("#")[2]) > int(late.ref.rpartition("#")[2])
