// Node-RED, for real and headless: start it on a loopback port with an empty temporary user directory, deploy a
// flow through the admin API (what the editor's Import + Deploy does), and report on stdout, one JSON line each:
//   {"event": "log", "line": ...}          every line Node-RED logs
//   {"event": "deployed", "status": 204}   the flow was accepted
//   {"event": "debug", "id", "name", "topic", "msg"}   what a debug node shows in the editor's sidebar
//   {"event": "status", "id", "status"}    a node's status (the text under it in the editor)
// A line {"inject": "<node id>"} on stdin presses that inject node's button; {"quit": true} stops Node-RED.
//
//   node nodered_harness.js <user dir> <port> <flow.json>
"use strict";

const fs = require("fs");
const path = require("path");
const http = require("http");
const readline = require("readline");
const { spawn } = require("child_process");
const WebSocket = require("ws");

const [userDir, port, flowFile] = process.argv.slice(2);
const settings = path.join(userDir, "settings.js");
fs.writeFileSync(settings, `module.exports = {
  uiHost: "127.0.0.1",
  uiPort: ${Number(port)},
  flowFile: "flows.json",
  credentialSecret: "peer-test",
  logging: {console: {level: "info", metrics: false, audit: false}},
  diagnostics: {enabled: false},
  telemetry: {enabled: false},
  editorTheme: {tours: false},
};
`);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function request(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({ host: "127.0.0.1", port: Number(port), method, path: urlPath,
      headers: Object.assign({ "Content-Type": "application/json" }, headers || {}) }, (res) => {
      let text = "";
      res.on("data", (chunk) => { text += chunk; });
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    if (data) {
      req.write(data);
    }
    req.end();
  });
}

const red = spawn(process.execPath, [require.resolve("node-red/red.js"), "--userDir", userDir, "--settings", settings],
  { stdio: ["ignore", "pipe", "pipe"] });
let started = false;
for (const stream of [red.stdout, red.stderr]) {
  readline.createInterface({ input: stream }).on("line", (line) => {
    emit({ event: "log", line });
    if (!started && line.includes("Server now running")) {
      started = true;
      deploy().catch((err) => emit({ event: "error", message: String(err) }));
    }
  });
}
red.on("exit", (code) => {
  emit({ event: "exit", code });
  process.exit(0);
});

function watch() {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/comms`);
    ws.on("open", () => {
      ws.send(JSON.stringify({ subscribe: "debug" }));
      ws.send(JSON.stringify({ subscribe: "status/#" }));
      resolve();
    });
    ws.on("message", (raw) => {
      for (const { topic, data } of JSON.parse(raw)) {
        if (topic === "debug") {
          let msg = data.msg;
          if (data.format && (data.format.startsWith("Object") || data.format.startsWith("array"))) {
            msg = JSON.parse(msg);
          }
          emit({ event: "debug", id: data.id, name: data.name, topic: data.topic, msg });
        } else if (topic.startsWith("status/")) {
          emit({ event: "status", id: topic.slice("status/".length), status: data });
        }
      }
    });
    ws.on("error", (err) => emit({ event: "error", message: String(err) }));
  });
}

async function deploy() {
  await watch();
  const flow = JSON.parse(fs.readFileSync(flowFile, "utf8"));
  const res = await request("POST", "/flows", flow, { "Node-RED-Deployment-Type": "full", "Node-RED-API-Version": "v1" });
  emit({ event: "deployed", status: res.status, body: res.text });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.inject) {
    request("POST", `/inject/${encodeURIComponent(command.inject)}`, {})
      .then((res) => emit({ event: "injected", id: command.inject, status: res.status }))
      .catch((err) => emit({ event: "error", message: String(err) }));
  } else if (command.quit) {
    red.kill("SIGINT");
  }
});
process.on("SIGTERM", () => red.kill("SIGINT"));
