"""The review page's labeling store and server rules, without a browser: archives written by the station's
own Archive class, labels copied into a dataset folder, no overwrite, exact undo, provenance, gains since a
training run, filters, the token and the form key on a real uvicorn server."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the review extra is not installed")
pytest.importorskip("uvicorn", reason="the review extra is not installed")

from edge.archive import Archive  # noqa: E402
from edge.config import ArchiveConfig  # noqa: E402
from edge.sources import Frame  # noqa: E402
from inspector.config import ConfigError, validate  # noqa: E402
from inspector.dataset import make_split, scan_folder  # noqa: E402
from inspector.fsutil import atomic_create_bytes, sha256_file  # noqa: E402
from inspector.preprocess import ChannelOrder  # noqa: E402
from inspector.protocol.enums import Verdict  # noqa: E402
from inspector.protocol.payloads import ModelRef, Result  # noqa: E402
from review.app import create_app, token_matches  # noqa: E402
from review.config import ReviewConfig  # noqa: E402
from review.frames import FrameFilter, scan_archives  # noqa: E402
from review.store import SIDECAR_SUFFIX, LabelError, LabelStore  # noqa: E402

DAY1 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _archive(root: Path, station: str, parts) -> None:
    """Archive ``parts`` [(verdict, top_class, score, capture_ts)] with the station's own writer."""
    archive = Archive(ArchiveConfig(path=root, pass_every=1), station)
    for seq, (verdict, top, score, ts) in enumerate(parts, start=1):
        image = np.full((24, 32, 3), 40 + 20 * seq, np.uint8)
        image[:, :8] = 255 - 20 * seq
        rid = f"{station}{seq:04d}".ljust(32, "0")
        path = archive.reserve(Verdict(verdict), top, seq, rid, ts)
        assert path is not None
        result = Result(
            id=rid,
            seq=seq,
            line="l1",
            station=station,
            verdict=Verdict(verdict),
            defect_score=score,
            threshold=0.5,
            top_class=top,
            top_score=max(score, 1 - score),
            scores={"good": 1 - score, top: score} if top != "good" else {"good": 1 - score},
            model=ModelRef(name="m", version="v7", sha256="abcdef012345"),
            captured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
            capture_ts=ts,
            inference_ms=1.0,
            image=str(path),
        )
        archive.write(path, Frame(image, ChannelOrder.BGR, ts, seq), result.model_dump(mode="json", by_alias=True))
    archive.close()


@pytest.fixture
def setup(tmp_path):
    _archive(
        tmp_path / "a1",
        "cam1",
        [("fail", "crack", 0.9, DAY1), ("review", "crack", 0.55, DAY1 + 60), ("pass", "good", 0.1, DAY1 + 86400)],
    )
    _archive(tmp_path / "a2", "cam2", [("fail", "spot", 0.8, DAY1 + 2 * 86400)])
    data = tmp_path / "data"
    (data / "good").mkdir(parents=True)
    (data / "crack").mkdir()
    frames, unusable = scan_archives([tmp_path / "a1", tmp_path / "a2"])
    assert unusable == 0
    return tmp_path, data, frames


def test_archives_are_read_newest_first_and_filtered(setup):
    root, _, frames = setup
    assert [f.result.station for f in frames] == ["cam2", "cam1", "cam1", "cam1"]
    assert [f.result.seq for f in frames[1:]] == [3, 2, 1]
    assert all(f.image.is_file() and f.overlay is None for f in frames)
    keys = [f.key for f in frames]
    assert [f.key for f in scan_archives([root / "a1", root, root / "a2", root / "a1"])[0]] == keys  # each once

    def keep(**q):
        filt = FrameFilter.from_query({k: str(v) for k, v in q.items()})
        return [(f.result.station, f.result.seq) for f in frames if filt.keeps(f, labeled=False)]

    assert keep(verdict="fail") == [("cam2", 1), ("cam1", 1)]
    assert keep(score_min=0.5, score_max=0.85) == [("cam2", 1), ("cam1", 2)]
    assert keep(top_class="crack", station="cam1") == [("cam1", 2), ("cam1", 1)]
    assert keep(date_from="2026-01-02", date_to="2026-01-02") == [("cam1", 3)]
    assert keep(show="labeled") == []
    with pytest.raises(ValueError, match="score_min"):
        FrameFilter.from_query({"score_min": "2"})


def test_overlay_named_in_the_sidecar_is_found_and_optional(setup):
    root, _, frames = setup
    frame = frames[-1]
    raw = json.loads(frame.sidecar.read_text())
    overlay = frame.image.with_name(f".{frame.image.stem}.heatmap.png")  # as edge/archive.py names it
    raw["heatmap"] = overlay.name
    raw["where"] = {"label": "crack", "x": 5, "y": 6, "box": [0, 0, 16, 12], "strength": 2.5}
    frame.sidecar.write_text(json.dumps(raw))
    again, _ = scan_archives([root / "a1"])
    assert next(f for f in again if f.key == frame.key).overlay is None  # named, but not there: not shown
    overlay.write_bytes(frame.image.read_bytes())
    again, _ = scan_archives([root / "a1"])
    found = next(f for f in again if f.key == frame.key)
    assert found.overlay == overlay and found.where == raw["where"]
    assert len(again) == 3  # the overlay image has no sidecar: it is not a frame


def test_label_copies_with_provenance_and_never_overwrites(setup):
    _, data, frames = setup
    store = LabelStore(data, "good")
    frame = frames[-1]  # cam1 seq 1, fail crack
    squatter = data / "crack" / frame.image.name
    squatter.write_bytes(b"someone else's file")
    record = store.label(frame, "crack", "ana")
    assert squatter.read_bytes() == b"someone else's file"
    assert record.image == data / "crack" / f"{frame.image.stem}-2{frame.image.suffix}"
    assert record.image.read_bytes() == frame.image.read_bytes() and frame.image.is_file()  # a copy
    side = json.loads(record.sidecar.read_text())
    assert record.sidecar.name == record.image.name + SIDECAR_SUFFIX
    assert side["label"] == "crack" and side["labeled_by"] == "ana"
    assert (side["station"], side["line"], side["captured_at"]) == ("cam1", "l1", frame.result.captured_at)
    assert (side["bundle_name"], side["bundle_version"], side["model_verdict"]) == ("m", "v7", "fail")
    assert side["image_sha256"] == sha256_file(record.image) and side["result_id"] == frame.result.id
    with pytest.raises(LabelError, match="already labeled 'crack'"):
        store.label(frame, "good", "ana")
    with pytest.raises(LabelError, match="unknown class 'dent'"):
        store.label(frames[0], "dent", "ana")
    with pytest.raises(FileExistsError):
        atomic_create_bytes(squatter, b"x")
    assert not [p for p in (data / "crack").iterdir() if p.name.startswith(".")]  # no staging file left
    frames[0].image.unlink()  # the archive's disk budget deleted it while the page showed it
    with pytest.raises(LabelError, match="cannot read"):
        store.label(frames[0], "good", "ana")


def test_undo_removes_exactly_what_the_label_created(setup):
    _, data, frames = setup
    store = LabelStore(data, "good")
    before = sorted(p for p in data.rglob("*"))
    record = store.label(frames[0], "good", "ana")
    assert store.labels()[frames[0].result.id].image == record.image
    store.undo(record)
    assert sorted(p for p in data.rglob("*")) == before and frames[0].image.is_file()
    assert store.labels() == {}

    changed = store.label(frames[0], "good", "ana")
    changed.image.write_bytes(b"edited by hand")
    with pytest.raises(LabelError, match="changed since"):
        store.undo(changed)
    assert changed.image.exists() and changed.sidecar.exists()  # nothing removed


def test_add_class_and_gains_with_and_without_a_run(setup):
    tmp_path, data, frames = setup
    (data / "good" / "old.png").write_bytes(frames[2].image.read_bytes())
    (data / "crack" / "old.png").write_bytes(frames[1].image.read_bytes())
    (data / "crack" / "old2.png").write_bytes(frames[3].image.read_bytes())
    store = LabelStore(data, "good")
    with pytest.raises(LabelError, match="not a usable class name"):
        store.add_class("../evil")
    with pytest.raises(LabelError, match="exists already"):
        store.add_class("crack")
    assert store.add_class("spot") == data / "spot"
    assert store.classes() == ["good", "crack", "spot"]
    store.label(frames[0], "spot", "ana")
    store.label(frames[-1], "crack", "ana")  # same bytes as crack/old2.png: a copy, named apart
    no_run = store.gains()
    assert no_run.total == {"good": 1, "crack": 3, "spot": 1}
    assert no_run.gained == {"good": 0, "crack": 1, "spot": 1}

    run = tmp_path / "run"
    run.mkdir()
    trained = data.parent / "trained"
    for cls in ("good", "crack"):
        (trained / cls).mkdir(parents=True)
        (trained / cls / "old.png").write_bytes((data / cls / "old.png").read_bytes())
    make_split(scan_folder(trained, "good"), ratios=(1.0, 0.0, 0.0)).save(run / "split.json")
    with_run = LabelStore(data, "good", run).gains()
    assert with_run.total == no_run.total
    # crack/old2.png and its labeled copy were never trained on; spot is new altogether
    assert with_run.gained == {"good": 0, "crack": 2, "spot": 1}


def test_token_rules():
    assert token_matches("s3cret-token-0123", "s3cret-token-0123")
    assert not token_matches("s3cret-token-0123", "s3cret-token-0124")
    assert not token_matches("s3cret-token-0123", None)


def test_config_refuses_an_open_host_without_a_token_and_names_the_problem(setup):
    tmp_path, data, _ = setup
    base = {"data": data, "archives": [tmp_path / "a1"]}
    assert validate(ReviewConfig, base).host == "127.0.0.1"
    with pytest.raises(ConfigError, match="reachable from other machines: give --token"):
        validate(ReviewConfig, {**base, "host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="at least 16 characters"):
        validate(ReviewConfig, {**base, "host": "0.0.0.0", "token": "short"})
    assert validate(ReviewConfig, {**base, "host": "0.0.0.0", "token": "x" * 16}).token is not None
    with pytest.raises(ConfigError, match="archive folder.* not found"):
        validate(ReviewConfig, {**base, "archives": [tmp_path / "nope"]})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        validate(ReviewConfig, {**base, "colour": "red"})


class Server:
    """The review app on a real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, cfg: ReviewConfig):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "review server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _get(url: str, headers=None):
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read().decode("latin-1"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_server_needs_the_token_and_the_form_key(setup):
    tmp_path, data, frames = setup
    token = "t0ken-for-the-review-page"
    cfg = validate(ReviewConfig, {"data": data, "archives": [tmp_path / "a1", tmp_path / "a2"], "token": token})
    with Server(cfg) as base:
        status, body, _ = _get(base + "/")
        assert status == 401 and "needs its token" in body
        assert _get(base + "/?token=wrong-token-wrong-token")[0] == 401
        assert _get(f"{base}/image/{frames[0].key}")[0] == 401
        status, _, headers = _get(base + "/?token=" + token + "&verdict=fail")
        assert status == 303 and "token" not in headers["location"] and "verdict=fail" in headers["location"]
        assert "httponly" in headers["set-cookie"].lower() and "samesite=strict" in headers["set-cookie"].lower()
        auth = {"Authorization": f"Bearer {token}"}
        status, body, _ = _get(base + "/?verdict=fail", auth)
        assert status == 200 and frames[0].image.name in body and "2 of 4 frames shown" in body
        assert _get(f"{base}/image/{frames[0].key}", auth)[0] == 200
        assert _get(f"{base}/image/{'0' * 16}", auth)[0] == 404

        form = urllib.parse.urlencode({"frame": frames[0].key, "label": "crack", "form_key": "forged"}).encode()
        request = urllib.request.Request(base + "/label", data=form, headers=auth)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    assert LabelStore(data, "good").labels() == {}


def test_add_class_and_label_through_the_server_with_the_pages_form_key(setup):
    import re

    tmp_path, data, frames = setup
    cfg = validate(ReviewConfig, {"data": data, "archives": [tmp_path / "a1", tmp_path / "a2"], "user": "bo"})
    with Server(cfg) as base:
        assert _get(base + "/", {"Host": "rebound.example"})[0] == 400  # DNS rebinding: not our host name
        status, body, _ = _get(base + "/?station=cam1")
        form_key = re.search(r'name="form_key" value="([^"]+)"', body).group(1)

        def post(path, **fields):
            data_ = urllib.parse.urlencode({"form_key": form_key, "station": "cam1", **fields}).encode()
            return _get_post(base + path, data_)

        status, _, headers = post("/classes", name="dent", frame=frames[1].key)
        assert status == 303 and "station=cam1" in headers["location"] and (data / "dent").is_dir()
        status, _, headers = post("/label", frame=frames[1].key, label="dent", next=frames[2].key)
        assert status == 303 and f"frame={frames[2].key}" in headers["location"]
        status, _, headers = post("/label", frame=frames[1].key, label="good")
        assert status == 303 and "already+labeled" in headers["location"]
        _, body, _ = _get(base + "/?show=labeled")
        assert "1 of 4 frames shown" in body and "labeled <b>dent</b> by bo" in body
    assert sorted(p.name for p in (data / "dent").iterdir()) == [
        frames[1].image.name,
        frames[1].image.name + SIDECAR_SUFFIX,
    ]


def _get_post(url: str, data: bytes):
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, response.read().decode("latin-1"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("latin-1"), dict(exc.headers)


def test_cli_errors_name_the_wrong_option(setup, capsys, monkeypatch):
    from app.cli import main

    tmp_path, data, _ = setup
    monkeypatch.delenv("INSPECTOR_REVIEW_TOKEN", raising=False)
    assert main(["review", str(data), "--archive", str(tmp_path / "missing")]) == 1
    assert "archive folder(s) not found" in capsys.readouterr().err
    assert main(["review", str(data), "--archive", str(tmp_path / "a1"), "--host", "0.0.0.0"]) == 1
    assert "give --token or set INSPECTOR_REVIEW_TOKEN" in capsys.readouterr().err
    assert main(["review", str(data), "--archive", str(tmp_path / "a1"), "--run", str(tmp_path)]) == 1
    assert "not a training run (no split.json)" in capsys.readouterr().err


def test_docs_review_commands_parse_and_name_every_option():
    import re
    import shlex

    from app.cli import build_parser

    text = (Path(__file__).resolve().parents[1] / "docs" / "review.md").read_text()
    commands = [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith("inspector review ")]
    assert len(commands) >= 2
    parser = build_parser()
    for command in commands:
        parser.parse_args(shlex.split(command)[1:])
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    options = {s for a in sub.choices["review"]._actions for s in a.option_strings if s.startswith("--")}
    documented = set(re.findall(r"`(--[a-z-]+)", text))
    assert options - {"--help", "--verbose"} <= documented, options - documented
