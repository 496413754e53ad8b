"""Sparkplug B bridge: the line's stations as Sparkplug devices of one edge node, for SCADA (Ignition, ...).

Stations stay simple (plain JSON on their own topics); this bridge reads those topics and speaks Sparkplug B
on the SCADA side, with the payloads encoded and decoded by the ``pysparkplug`` library:

* the edge node ``spBv1.0/<group>/NBIRTH/<node>`` carries ``bdSeq`` (also in the NDEATH last will, so the
  host application can pair a death with its birth), ``Node Control/Rebirth`` and the controller's line
  counts (``Line/*``) when a controller publishes its state. ``bdSeq`` goes up by one (modulo 256) with
  every MQTT session, across restarts too (Sparkplug 3.0 requires it of the will of each CONNECT): the
  last one is kept in ``sparkplug.state_file`` (:class:`BdSeqFile`);
* each station is a device: DBIRTH when it is first seen or comes back online, DDATA for changed values
  (``Stats/*`` from its stats, ``Last Result/*`` from its results), DDEATH when its status goes offline;
* every metric of a birth has an alias, unique in the edge node (node metrics 0.., device *n*'s from
  n * 1000); NDATA and DDATA then carry the alias and the datatype but no name, and commands may name a
  metric by either (Sparkplug 3.0: with aliases, data and command messages carry the alias only);
* DCMD ``Device Control/Trigger`` (a part id), ``/Pause`` (true pauses, false resumes) and ``/Snapshot``
  become the station's operational JSON commands (built with :mod:`inspector.protocol.commands`, so validated
  the same way), and ``Device Control/Rebirth`` / NCMD ``Node Control/Rebirth`` republish the births. The
  threshold is an engineering command (it changes verdicts) that the bridge's broker account may not send,
  so SCADA gets no writable threshold; ``Stats/*`` and ``Last Result/*`` still show the one in use.

pysparkplug 0.6 declares ``paho-mqtt<2`` but only its own MQTT client needs that; its payload and topic
classes, all this module uses, work with paho-mqtt 2 (install it with ``pip install --no-deps``).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from inspector import __version__
from inspector.config import default_state_dir
from inspector.fsutil import PathLike, atomic_write_json
from inspector.mqtt import BrokerClient, MqttConfig
from inspector.protocol.commands import (
    PauseCommand,
    ResumeCommand,
    SnapshotCommand,
    StationCommand,
    TriggerCommand,
    command_topic,
)
from inspector.protocol.enums import Presence
from inspector.protocol.payloads import ControllerState, Result, Stats
from inspector.protocol.topics import StationTopics

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH_NODE = "Node Control/Rebirth"
REBIRTH_DEVICE = "Device Control/Rebirth"
DEVICE_ALIAS_BLOCK = 1000  # device n's metrics have aliases n * 1000 + i; the node's own are below 1000


def _station_command(name: str, value: Any) -> Optional[StationCommand]:
    """The station command (an :mod:`inspector.protocol.commands` model) for a written control metric; None: nothing to do."""
    if name == "Device Control/Trigger":
        return TriggerCommand(cmd="trigger", part_id=str(value)) if value else None
    if name == "Device Control/Pause":
        return PauseCommand(cmd="pause") if value else ResumeCommand(cmd="resume")
    if name == "Device Control/Snapshot":
        return SnapshotCommand(cmd="snapshot") if value else None
    raise ValueError(f"unsupported control metric {name!r}")


# Writable device metrics, declared in every DBIRTH: (name, datatype, initial value).
CONTROL_METRICS = (
    ("Device Control/Rebirth", "BOOLEAN", False),
    ("Device Control/Trigger", "STRING", ""),
    ("Device Control/Pause", "BOOLEAN", False),
    ("Device Control/Snapshot", "BOOLEAN", False),
)


def _pysparkplug():
    try:
        import pysparkplug
    except ImportError:
        raise RuntimeError(
            "the Sparkplug B bridge needs pysparkplug: pip install --no-deps 'pysparkplug>=0.6.1,<0.7' "
            "(see docs/deployment.md)"
        ) from None
    return pysparkplug


class BdSeqFile:
    """The bdSeq of the bridge's last MQTT session, in a small JSON file written atomically.

    Sparkplug 3.0 wants the bdSeq of each CONNECT's will (and of the NBIRTH that follows) to be one more, modulo
    256, than the previous CONNECT's, also after a restart: a host application pairs an NDEATH with its birth
    by bdSeq, and a restarted edge node that began at 0 again could have its new session taken for the one
    that died. A missing file starts at 0; an unreadable one too, with a warning (the bridge must come up).
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)

    def last(self) -> Optional[int]:
        """The bdSeq saved last, or None when there is none (first start, or a damaged file)."""
        try:
            value = json.loads(self.path.read_text())["bdSeq"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot read the Sparkplug bdSeq from %s (%s): starting at 0", self.path, exc)
            return None
        if type(value) is not int or not 0 <= value <= 255:
            log.warning("the Sparkplug bdSeq in %s is %r, not 0..255: starting at 0", self.path, value)
            return None
        return value

    def next(self) -> int:
        """The bdSeq of the next session (one more than the last, modulo 256; 0 first), saved before it is used."""
        last = self.last()
        value = 0 if last is None else (last + 1) % 256
        self.save(value)
        return value

    def save(self, value: int) -> None:
        atomic_write_json(self.path, {"bdSeq": value})


def default_state_file(line: str, group_id: str, edge_node_id: str) -> Path:
    """``sparkplug.state_file`` when the config names none (see :class:`controller.config.SparkplugConfig`)."""
    return default_state_dir(line, "sparkplug") / f"sparkplug-{group_id}-{edge_node_id}.json"


@dataclass(frozen=True)
class _Def:
    name: str
    datatype: str  # a pysparkplug.DataType member name
    field: str  # payload field; a dotted path reads a nested model's field (where.x)

    def value(self, payload: Dict[str, Any]) -> Any:
        """The metric's value in a payload dumped to JSON types: None when absent, a list as one string."""
        value: Any = payload
        for part in self.field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return "; ".join(map(str, value)) if isinstance(value, list) else value


STATS_METRICS: Tuple[_Def, ...] = tuple(
    _Def(f"Stats/{f}", t, f)
    for f, t in (
        ("passed", "UINT64"),
        ("failed", "UINT64"),
        ("review", "UINT64"),
        ("yield_pct", "DOUBLE"),
        ("fps", "DOUBLE"),
        ("inference_ms_p50", "DOUBLE"),
        ("inference_ms_p95", "DOUBLE"),
        ("frames_captured", "UINT64"),
        ("frames_inspected", "UINT64"),
        ("frames_dropped", "UINT64"),
        ("outbox_depth", "UINT64"),
        ("camera_state", "STRING"),
        ("model_version", "STRING"),
        ("paused", "BOOLEAN"),
        ("uptime_s", "DOUBLE"),
        ("gated", "UINT64"),
    )
)
RESULT_METRICS: Tuple[_Def, ...] = tuple(
    _Def(f"Last Result/{f.replace('.', '/')}", t, f)
    for f, t in (
        ("id", "STRING"),
        ("seq", "INT64"),
        ("part_id", "STRING"),
        ("verdict", "STRING"),
        ("defect_score", "DOUBLE"),
        ("top_class", "STRING"),
        ("capture_ts", "DOUBLE"),
        ("inference_ms", "DOUBLE"),
        ("threshold", "DOUBLE"),
        ("gate", "STRING"),  # the plausibility gate's reasons, joined by "; "; null when it let the frame through
        # Where the defect is (failed and review parts; null otherwise); the box stays in the JSON result.
        ("where.label", "STRING"),
        ("where.x", "INT64"),
        ("where.y", "INT64"),
        ("where.strength", "DOUBLE"),
    )
)
LINE_METRICS: Tuple[_Def, ...] = tuple(
    _Def(f"Line/{f}", t, f)
    for f, t in (
        ("state", "STRING"),
        ("parts", "UINT64"),
        ("accepted", "UINT64"),
        ("rejected", "UINT64"),
        ("yield_pct", "DOUBLE"),
        ("pending", "UINT64"),
        ("results", "UINT64"),
        ("duplicates", "UINT64"),
        ("late", "UINT64"),
        ("sender_mismatches", "UINT64"),
    )
)
# Every device metric in DBIRTH order; the index is its place in the device's alias block.
DEVICE_METRIC_NAMES: Tuple[str, ...] = tuple(d.name for d in STATS_METRICS + RESULT_METRICS) + tuple(
    name for name, _, _ in CONTROL_METRICS
)


class SparkplugBridge:
    """One Sparkplug edge node for a line; start() connects both sides, stop() sends NDEATH and disconnects."""

    def __init__(
        self,
        source: MqttConfig,
        line: str,
        group_id: str,
        edge_node_id: Optional[str] = None,
        sink: Optional[MqttConfig] = None,
        controller_id: str = "controller",
        state_file: Optional[PathLike] = None,
    ):
        self.sp = _pysparkplug()
        self.prefix = source.prefix
        self.line = line
        self.group_id = group_id
        self.node_id = edge_node_id or line
        self.controller_id = controller_id
        self._lock = threading.RLock()
        self._seq = 0
        self.bd_seq_file = BdSeqFile(state_file or default_state_file(line, group_id, self.node_id))
        try:
            self.bd_seq = self.bd_seq_file.next()
        except OSError as exc:
            raise RuntimeError(f"cannot write sparkplug.state_file {self.bd_seq_file.path}: {exc}") from None
        self.devices: Dict[str, Dict[str, Any]] = {}  # station -> metric name -> value
        self._device_numbers: Dict[str, int] = {}  # station -> n of its alias block, fixed for the process
        self.born: Dict[str, bool] = {}
        self.line_values: Dict[str, Any] = {}
        self.sender_mismatches = 0  # results naming another station or line than their topic: not bridged
        self.source = BrokerClient(source, f"inspector-{line}-sparkplug-in")
        self.source.on_connect(self._subscribe_source)
        self.source.client.on_message = self._on_station_message
        self.sink = BrokerClient(sink or source, f"inspector-{line}-sparkplug-{self.node_id}")
        self._set_will()
        self.sink.on_connect(self._on_sink_connect)
        self.sink.on_disconnect(self._on_sink_disconnect)
        self.sink.client.on_message = self._on_command

    @classmethod
    def from_line_config(cls, cfg) -> SparkplugBridge:
        sp = cfg.sparkplug
        return cls(cfg.mqtt, cfg.line, sp.group_id, sp.edge_node_id, sp.mqtt, cfg.controller_id, sp.state_file)

    # -- topics and payloads ---------------------------------------------------------------------------

    def topic(self, message_type: str, device: Optional[str] = None) -> str:
        return str(
            self.sp.Topic(
                group_id=self.group_id,
                message_type=self.sp.MessageType(message_type),
                edge_node_id=self.node_id,
                device_id=device,
            )
        )

    def _metric(self, name: str, datatype: str, value: Any, ts: int, alias: Optional[int] = None, named: bool = True):
        """One metric; ``named=False`` (data messages) sends only its alias."""
        dtype = self.sp.DataType[datatype]
        if value is not None and datatype in ("UINT64", "INT64"):
            value = int(value)
        elif value is not None and datatype == "DOUBLE":
            value = float(value)
        return self.sp.Metric(
            timestamp=ts,
            name=name if named or alias is None else None,
            datatype=dtype,
            value=value,
            is_null=value is None,
            alias=alias,
        )

    def _node_metric_defs(self) -> List[Tuple[str, str]]:
        """(name, datatype) of the NBIRTH metrics; the index is the alias."""
        return [
            ("bdSeq", "INT64"),
            (REBIRTH_NODE, "BOOLEAN"),
            ("Properties/line", "STRING"),
            ("Properties/software_version", "STRING"),
        ] + [(d.name, d.datatype) for d in LINE_METRICS]

    def _node_alias(self, name: str) -> int:
        return [n for n, _ in self._node_metric_defs()].index(name)

    def _device_alias(self, station: str, name: str) -> int:
        number = self._device_numbers.setdefault(station, len(self._device_numbers) + 1)
        return number * DEVICE_ALIAS_BLOCK + DEVICE_METRIC_NAMES.index(name)

    def _metric_name(self, station: Optional[str], metric) -> Optional[str]:
        """The name of a command's metric, given by name or by the alias its birth declared."""
        if metric.name:
            return metric.name
        if metric.alias is None:
            return None
        if station is None:
            names = [n for n, _ in self._node_metric_defs()]
            return names[metric.alias] if 0 <= metric.alias < len(names) else None
        number, index = divmod(metric.alias, DEVICE_ALIAS_BLOCK)
        if self._device_numbers.get(station) != number or index >= len(DEVICE_METRIC_NAMES):
            return None
        return DEVICE_METRIC_NAMES[index]

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _bd_seq_metric(self, ts: int):
        return self._metric("bdSeq", "INT64", self.bd_seq, ts)

    def _set_will(self) -> None:
        death = self.sp.NDeath(
            timestamp=self.sp.get_current_timestamp(),
            bd_seq_metric=self._bd_seq_metric(self.sp.get_current_timestamp()),
        )
        self.sink.client.will_set(self.topic("NDEATH"), death.encode(), qos=1, retain=False)

    def _publish(self, topic: str, payload) -> None:
        # Datatypes on every metric (not only in births) let any consumer decode a DDATA on its own.
        self.sink.publish(topic, payload.encode(include_dtypes=True), qos=0, retain=False)

    # -- births and deaths -----------------------------------------------------------------------------

    def _node_birth(self) -> None:
        ts = self.sp.get_current_timestamp()
        self._seq = 0
        values = {
            "bdSeq": self.bd_seq,
            REBIRTH_NODE: False,
            "Properties/line": self.line,
            "Properties/software_version": __version__,
            **self.line_values,
        }
        metrics = [
            self._metric(name, dtype, values.get(name), ts, alias)
            for alias, (name, dtype) in enumerate(self._node_metric_defs())
        ]
        self._publish(self.topic("NBIRTH"), self.sp.NBirth(timestamp=ts, seq=self._next_seq(), metrics=tuple(metrics)))
        for station in list(self.devices):
            self.born[station] = False
            self._device_birth(station)

    def _device_birth(self, station: str) -> None:
        if not self.sink.connected.is_set():
            return
        ts = self.sp.get_current_timestamp()
        values = self.devices[station]
        metrics = [
            self._metric(d.name, d.datatype, values.get(d.name), ts, self._device_alias(station, d.name))
            for d in STATS_METRICS + RESULT_METRICS
        ]
        metrics += [
            self._metric(name, dtype, initial, ts, self._device_alias(station, name))
            for name, dtype, initial in CONTROL_METRICS
        ]
        self._publish(
            self.topic("DBIRTH", station), self.sp.DBirth(timestamp=ts, seq=self._next_seq(), metrics=tuple(metrics))
        )
        self.born[station] = True

    def _device_death(self, station: str) -> None:
        if self.born.get(station) and self.sink.connected.is_set():
            self._publish(
                self.topic("DDEATH", station),
                self.sp.DDeath(timestamp=self.sp.get_current_timestamp(), seq=self._next_seq()),
            )
        self.born[station] = False

    def _on_sink_connect(self, session_present: bool) -> None:
        with self._lock:
            self.sink.client.subscribe(
                [(self.topic("NCMD"), 1), (f"{NAMESPACE}/{self.group_id}/DCMD/{self.node_id}/+", 1)]
            )
            self._node_birth()

    def _on_sink_disconnect(self) -> None:
        with self._lock:
            # The next connection is a new session: its NBIRTH and its will carry the next bdSeq.
            self.bd_seq = (self.bd_seq + 1) % 256
            try:
                self.bd_seq_file.save(self.bd_seq)
            except OSError:  # a paho callback must not raise; the session still gets the right bdSeq
                log.exception("cannot save the Sparkplug bdSeq to %s", self.bd_seq_file.path)
            self._set_will()
            self.born = {station: False for station in self.born}

    # -- station side ----------------------------------------------------------------------------------

    def _subscribe_source(self, session_present: bool) -> None:
        base = f"{self.prefix}/{self.line}/+"
        self.source.client.subscribe([(f"{base}/{leaf}", 1) for leaf in ("status", "stats", "result", "state")])

    def _on_station_message(self, client, userdata, msg) -> None:
        try:
            self.handle_station_message(msg.topic, msg.payload)
        except Exception:  # a malformed message must not stop the bridge
            log.exception("cannot bridge message on %s", msg.topic)

    def handle_station_message(self, topic: str, payload: bytes) -> None:
        parsed = StationTopics.parse(topic)
        if parsed is None:
            return
        prefix, line, station, leaf = parsed
        if (prefix, line) != (self.prefix, self.line):
            return
        with self._lock:
            if leaf == "state":
                self._update_line(ControllerState.model_validate_json(payload))
            elif leaf == "status":
                status = payload.decode("utf-8", "replace").strip()
                if station in self.devices and status == Presence.OFFLINE:
                    self._device_death(station)
                elif station in self.devices and status == Presence.ONLINE and not self.born.get(station):
                    self._device_birth(station)
            elif leaf == "stats":
                stats = Stats.model_validate_json(payload)
                self._update_device(station, STATS_METRICS, stats.model_dump(mode="json"))
            elif leaf == "result":
                result = Result.model_validate_json(payload)
                if result.names_other_sender(line, station):
                    self.sender_mismatches += 1
                    log.warning(
                        "result %s on %s names station %r of line %r: not bridged",
                        result.id,
                        topic,
                        result.station,
                        result.line,
                    )
                    return
                self._update_device(station, RESULT_METRICS, result.model_dump(mode="json"))

    def _changed(self, defs, source: Dict[str, Any], target: Dict[str, Any]) -> List[_Def]:
        changed = []
        for d in defs:
            value = d.value(source)
            if target.get(d.name, object()) != value:
                target[d.name] = value
                changed.append(d)
        return changed

    def _update_device(self, station: str, defs, source: Dict[str, Any]) -> None:
        values = self.devices.setdefault(station, {})
        changed = self._changed(defs, source, values)
        if not self.born.get(station):
            self._device_birth(station)
        elif changed and self.sink.connected.is_set():
            ts = self.sp.get_current_timestamp()
            metrics = tuple(
                self._metric(d.name, d.datatype, values[d.name], ts, self._device_alias(station, d.name), named=False)
                for d in changed
            )
            self._publish(
                self.topic("DDATA", station), self.sp.DData(timestamp=ts, seq=self._next_seq(), metrics=metrics)
            )

    def _update_line(self, state: ControllerState) -> None:
        changed = self._changed(LINE_METRICS, state.model_dump(mode="json"), self.line_values)
        if changed and self.sink.connected.is_set():
            ts = self.sp.get_current_timestamp()
            metrics = tuple(
                self._metric(d.name, d.datatype, self.line_values[d.name], ts, self._node_alias(d.name), named=False)
                for d in changed
            )
            self._publish(self.topic("NDATA"), self.sp.NData(timestamp=ts, seq=self._next_seq(), metrics=metrics))

    # -- commands from SCADA ---------------------------------------------------------------------------

    def _on_command(self, client, userdata, msg) -> None:
        try:
            self.handle_command(msg.topic, msg.payload)
        except Exception:
            log.exception("cannot handle Sparkplug command on %s", msg.topic)

    def handle_command(self, topic: str, payload: bytes) -> None:
        parsed = self.sp.Topic.from_str(topic)
        with self._lock:
            if parsed.message_type == self.sp.MessageType.NCMD:
                metrics = self.sp.NCmd.decode(payload).metrics
                if any(self._metric_name(None, m) == REBIRTH_NODE and m.value for m in metrics):
                    self._node_birth()
                return
            station = parsed.device_id
            for metric in self.sp.DCmd.decode(payload).metrics:
                name = self._metric_name(station, metric)
                if name == REBIRTH_DEVICE:
                    if metric.value and station in self.devices:
                        self._device_birth(station)
                    continue
                try:
                    command = _station_command(name or f"alias {metric.alias}", metric.value)
                except ValueError as exc:  # includes a command the station schema refuses
                    log.warning("Sparkplug command for %s ignored: %s", station, exc)
                    continue
                if command is not None:
                    topic = command_topic(StationTopics(self.prefix, self.line, station), command)
                    self.source.publish(topic, command.model_dump_json(exclude_none=True), qos=1)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if not self.sink.start(timeout):
            self.sink.stop()
            raise RuntimeError("the Sparkplug bridge cannot connect to the SCADA broker")
        if not self.source.start(timeout):
            self.stop()
            raise RuntimeError("the Sparkplug bridge cannot connect to the stations' broker")
        log.info("Sparkplug B edge node %s/%s up", self.group_id, self.node_id)

    def stop(self) -> None:
        """A clean shutdown publishes the NDEATH itself (the broker sends the will only on a lost connection)."""
        self.source.stop()
        with self._lock:
            death = self.sp.NDeath(
                timestamp=self.sp.get_current_timestamp(),
                bd_seq_metric=self._bd_seq_metric(self.sp.get_current_timestamp()),
            )
            topic = self.topic("NDEATH")
            self.sink.on_disconnect(None)
        self.sink.stop(final=(topic, death.encode(), False))
