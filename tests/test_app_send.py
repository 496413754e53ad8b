"""`inspector send`: a typed command to a real station over a real broker, answered by the station's event."""

import argparse
import hashlib

import pytest

from app.commands import send
from inspector.bundle import Bundle
from inspector.exitcodes import ExitCode
from tests.fixtures_edge import StationThread, send_args, station_config


def _copy(src, dest, version):
    bundle = Bundle.load(src)
    return Bundle.create(bundle.manifest.model_copy(update={"version": version}), bundle.model).save(dest)


def test_send_builds_the_typed_command_and_refuses_bad_values_before_sending(tmp_path):
    parser = argparse.ArgumentParser()
    send.add_arguments(parser)
    bundle = tmp_path / "v2.inspector"
    bundle.write_bytes(b"bundle bytes")
    cmd = send.build_command(parser.parse_args(["--station", "s", "reload", str(bundle)]))
    assert cmd.cmd == "reload" and cmd.request_id.startswith("send-")
    assert cmd.sha256 == hashlib.sha256(b"bundle bytes").hexdigest()  # a local file: its hash travels along
    threshold = send.build_command(
        parser.parse_args(["--station", "s", "set_threshold", "0.4", "--review", "0.3", "0.5"])
    )
    assert (threshold.threshold, threshold.review_low, threshold.review_high) == (0.4, 0.3, 0.5)
    with pytest.raises(ValueError, match="threshold"):
        send.build_command(parser.parse_args(["--station", "s", "set_threshold", "1.5"]))


def test_send_reload_waits_for_the_station_and_reports_refusal(
    shared_broker, tmp_path, int8_bundle, synth_root, capsys
):
    models = tmp_path / "models"
    models.mkdir()
    current = _copy(int8_bundle, models / "v1.inspector", "v1")
    _copy(int8_bundle, models / "v2.inspector", "v2")
    cfg = station_config(
        shared_broker,
        tmp_path,
        current,
        {"type": "folder", "path": str(synth_root / "good"), "loop": True, "fps": 20},
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    station = StationThread(cfg).start()
    try:
        rec.wait_for(lambda r: r.results(), what="first results")
        assert station.station.publisher.cmd_subscribed.wait(20)
        assert send.run(send_args(shared_broker, cfg.station, "reload", "v2.inspector")) == send.EXIT_APPLIED
        assert "model_reloaded" in capsys.readouterr().out
        rec.wait_for(lambda r: r.results() and r.results()[-1]["model"]["version"] == "v2", what="v2 results")
        assert send.run(send_args(shared_broker, cfg.station, "reload", "../outside.inspector")) == send.EXIT_REFUSED
        assert "refused" in capsys.readouterr().out
        assert send.run(send_args(shared_broker, cfg.station, "pause")) == send.EXIT_APPLIED
    finally:
        assert station.stop() == ExitCode.OK
    assert send.run(send_args(shared_broker, cfg.station, "resume", timeout=1.0)) == send.EXIT_NO_ANSWER
    assert "no answer" in capsys.readouterr().err
