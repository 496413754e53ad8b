// A Sparkplug B host application on Eclipse Tahu's JavaScript payload library (sparkplug-payload) and mqtt.js,
// as Tahu's own JS host examples are built (sparkplug-client is an edge-node client, not a host).
//
//   node sparkplug_host.js <mqtt-url> <group_id> <host_id>
//
// It publishes its STATE (Sparkplug 3.0), subscribes to the group, decodes every message with Tahu and keeps
// the host's view of each edge node and device: metrics by name (aliases resolved from the births), the
// bdSeq of the node's current birth, and the seq of the last message. Everything it sees is printed as one
// JSON line on stdout; lines on stdin are commands to send (when it is killed, its will says it is offline):
//   {"ncmd": [{"name": ..., "type": ..., "value": ...}], "node": "<edge_node_id>"}
//   {"dcmd": [...], "node": "<edge_node_id>", "device": "<device_id>"}
"use strict";

const mqtt = require("mqtt");
const readline = require("readline");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

const [url, group, hostId] = process.argv.slice(2);
const stateTopic = `spBv1.0/STATE/${hostId}`;
const nodes = {}; // edge node id -> {bdSeq, seq, aliases: {alias: name}, metrics: {}, devices: {id: {metrics}}}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function plain(value) {
  // Tahu returns 64-bit integers as Long objects (UInt64, DateTime): JSON needs a number.
  if (value !== null && typeof value === "object" && typeof value.toNumber === "function") {
    return value.toNumber();
  }
  if (Buffer.isBuffer(value)) {
    return value.toString("base64");
  }
  return value;
}

function described(metrics, aliases) {
  return metrics.map((m) => ({
    name: m.name !== undefined ? m.name : aliases[plain(m.alias)],
    alias: m.alias === undefined ? null : plain(m.alias),
    type: m.type === undefined ? null : m.type,
    value: plain(m.value),
  }));
}

function checkSeq(node, nodeId, kind, seq) {
  // Sparkplug: NBIRTH has seq 0, every later message of the node one more (mod 256); a gap means a lost
  // message, and a host then asks for a rebirth.
  const expected = kind === "NBIRTH" ? 0 : (node.seq + 1) % 256;
  if (seq !== expected) {
    emit({ event: "seq_error", node: nodeId, kind, seq, expected });
  }
  node.seq = seq;
}

const client = mqtt.connect(url, {
  clientId: `tahu-host-${hostId}`,
  protocolVersion: 5,
  clean: true,
  reconnectPeriod: 200,
  will: { topic: stateTopic, payload: JSON.stringify({ online: false, timestamp: Date.now() }), qos: 1, retain: true },
});

client.on("connect", () => {
  client.subscribe([`spBv1.0/${group}/#`], { qos: 1 }, (err) => {
    if (err) {
      emit({ event: "error", message: String(err) });
      return;
    }
    client.publish(stateTopic, JSON.stringify({ online: true, timestamp: Date.now() }), { qos: 1, retain: true }, () =>
      emit({ event: "ready" }));
  });
});

client.on("message", (topic, message) => {
  const parts = topic.split("/");
  if (parts[0] !== "spBv1.0" || parts[1] !== group) {
    return;
  }
  const [, , kind, nodeId, deviceId] = parts;
  let payload;
  try {
    payload = sparkplug.decodePayload(message);
  } catch (err) {
    emit({ event: "decode_error", topic, message: String(err) });
    return;
  }
  const metrics = payload.metrics || [];
  const seq = payload.seq === undefined ? null : plain(payload.seq);
  if (kind === "NCMD" || kind === "DCMD") {
    return; // our own commands
  }
  if (kind === "NBIRTH") {
    nodes[nodeId] = { seq: 0, aliases: {}, metrics: {}, devices: {} };
  }
  const node = nodes[nodeId];
  if (node === undefined) {
    emit({ event: "unborn", kind, node: nodeId });
    return;
  }
  if (kind === "NDEATH") {
    // The will carries the bdSeq of the session that died: it must be the one of the current birth.
    const bd = metrics.find((m) => m.name === "bdSeq");
    const bdSeq = bd === undefined ? null : plain(bd.value);
    emit({ event: "NDEATH", node: nodeId, bdSeq, birth_bdSeq: node.bdSeq, metrics: described(metrics, {}) });
    delete nodes[nodeId];
    return;
  }
  checkSeq(node, nodeId, kind, seq);
  if (kind === "NBIRTH" || kind === "DBIRTH") {
    for (const m of metrics) {
      if (m.alias !== undefined) {
        node.aliases[plain(m.alias)] = m.name;
      }
    }
  }
  const list = described(metrics, node.aliases);
  let view;
  if (kind === "NBIRTH" || kind === "NDATA") {
    view = node.metrics;
  } else {
    if (kind === "DBIRTH") {
      node.devices[deviceId] = { metrics: {} };
    }
    if (node.devices[deviceId] === undefined) {
      emit({ event: "unborn", kind, node: nodeId, device: deviceId });
      return;
    }
    view = node.devices[deviceId].metrics;
  }
  for (const m of list) {
    view[m.name] = m.value;
  }
  if (kind === "NBIRTH") {
    node.bdSeq = view.bdSeq;
  }
  if (kind === "DDEATH") {
    delete node.devices[deviceId];
  }
  emit({ event: kind, node: nodeId, device: deviceId || null, seq, metrics: list, view });
});

client.on("error", (err) => emit({ event: "error", message: String(err) }));

function send(kind, nodeId, deviceId, metrics) {
  const topic = `spBv1.0/${group}/${kind}/${nodeId}` + (deviceId ? `/${deviceId}` : "");
  const payload = sparkplug.encodePayload({ timestamp: Date.now(), metrics });
  client.publish(topic, payload, { qos: 0 }, (err) => emit({ event: "sent", kind, topic, error: err ? String(err) : null }));
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const request = JSON.parse(line);
  if (request.ncmd) {
    send("NCMD", request.node, null, request.ncmd);
  } else if (request.dcmd) {
    send("DCMD", request.node, request.device, request.dcmd);
  }
});
