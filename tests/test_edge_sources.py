"""Frame source plugins on real inputs: image folders, video files, an HTTP MJPEG camera, GStreamer, USB."""
import time

import cv2
import pytest

from edge import config as C
from edge.sources import (
    BadFrame,
    EndOfSource,
    SourceConfigError,
    SourceError,
    create_source,
    gstreamer_available,
    gstreamer_pipeline,
    source_types,
)
from inspector.preprocess import ChannelOrder
from tests.fixtures_edge import read_level, write_folder, write_video


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
    union_types = {model.model_fields["type"].default for model in
                   (C.UsbSource, C.GStreamerSource, C.StreamSource, C.VideoSource, C.FolderSource)}
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
