"""The summary tables in bench/README.md, generated from bench/results/{full,quick}/*.json.

Only the text between the ``<!-- results:begin -->`` and ``<!-- results:end -->`` markers is rewritten;
the rest of the README is written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

from bench.common import REPO, RESULTS

README = REPO / "bench" / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _load(folder: Path, name: str) -> Optional[dict]:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _table(header: List[str], rows: List[List]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _ctx(doc: dict) -> str:
    c = doc["context"]
    return (
        f"_{c['started']}, commit {c.get('git_commit') or '?'}, load average at start "
        f"{c['load_average_at_start'][0]} (end {c.get('load_average_at_end', ['?'])[0]}) on {c['cpus']} "
        f"CPUs, {c.get('wall_s', '?')} s._"
    )


def _f(value, digits=1):
    return None if value is None else f"{value:.{digits}f}"


def interpreter_section(doc: dict) -> List[str]:
    rows = []
    for r in doc["results"]["rows"]:
        t1, t2 = r["threads"]["1"], r["threads"]["2"]
        rows.append(
            [
                f"{r['arch']} {r['size']}",
                r["precision"],
                _f(r["model_mb"], 2),
                f"{_f(t1['latency_ms']['p50'], 2)} / {_f(t1['latency_ms']['p99'], 2)}",
                f"{_f(t2['latency_ms']['p50'], 2)} / {_f(t2['latency_ms']['p99'], 2)}",
                _f(t1["throughput_fps"]),
                _f(t2["throughput_fps"]),
                _f(r["peak_rss_one_interpreter_mb"], 0),
                _f(r["model_memory_mb"], 0),
                _partitions(r.get("delegation")),
            ]
        )
    return [
        f"### 1. Interpreter limit ({doc['results']['reps']} invocations per thread count)",
        "",
        _ctx(doc),
        "",
    ] + _table(
        [
            "model",
            "precision",
            "size MB",
            "1 thread p50 / p99 ms",
            "2 threads p50 / p99 ms",
            "fps 1t",
            "fps 2t",
            "peak RSS MB",
            "model RSS MB",
            "XNNPACK partitions (ops outside)",
        ],
        rows,
    )


def _partitions(delegation: Optional[dict]) -> str:
    """``1 (QUANTIZE 2, SOFTMAX 1)``; empty for results measured before the count existed."""
    if not delegation:
        return ""
    outside = ", ".join(f"{name} {count}" for name, count in delegation["outside"].items())
    return f"{delegation['partitions']} ({outside or 'none'})"


def pipeline_section(doc: dict) -> List[str]:
    rows, naive_rows = [], []
    for r in doc["results"]["rows"]:
        i, s, n = r["interpreter"], r["station"], r["naive"]
        name = f"{r['arch']} {r['size']} {r['precision']}, {r['threads']}t"
        rows.append(
            [
                name,
                _f(i["fps"]),
                _f(s["fps"]),
                f"**{r['station_over_interpreter']['median']:.2f}**",
                f"{_f(s['latency_ms'].get('p50'))} / {_f(s['latency_ms'].get('p99'))}",
                f"{_f(i['latency_ms'].get('p50'))} / {_f(i['latency_ms'].get('p99'))}",
                r["station_p99_over_interpreter_p99"],
                s.get("frames_dropped"),
                _f(s.get("cpu_percent"), 0),
                _f(s.get("peak_rss_mb"), 0),
                _f(s.get("broker_cpu_percent"), 0),
            ]
        )
        naive_rows.append(
            [
                name,
                _f(s["fps"]),
                _f(n["fps"]),
                f"{r['naive_over_interpreter']['median']:.2f}",
                f"{_f(n['latency_ms'].get('p50'))} / {_f(n['latency_ms'].get('p99'))}",
                _f(n.get("cpu_percent"), 0),
                _f(n.get("peak_rss_mb"), 0),
            ]
        )
    stage_rows = [
        [f"{r['arch']} {r['size']} {r['precision']}, {r['threads']}t"]
        + [_f(r["stages_ms"][k]["p50"], 2) for k in ("decode", "preprocess", "model", "result_json")]
        + [
            _f(r["interpreter"].get("cpu_ms_per_frame"), 2),
            _f(r["station"].get("cpu_ms_per_frame"), 2),
            _f(r["naive"].get("cpu_ms_per_frame"), 2),
        ]
        for r in doc["results"]["rows"]
        if "stages_ms" in r
    ]
    return (
        ["### 2. Station pipeline vs interpreter only", "", _ctx(doc), ""]
        + _table(
            [
                "bundle, threads",
                "interpreter fps",
                "station fps",
                "ratio",
                "station latency p50 / p99 ms",
                "interpreter p50 / p99 ms",
                "p99 ratio",
                "dropped",
                "station CPU %",
                "station peak RSS MB",
                "broker CPU %",
            ],
            rows,
        )
        + ["### 3. Naive loop (same run)", ""]
        + _table(
            [
                "bundle, threads",
                "station fps",
                "naive fps",
                "naive / interpreter",
                "naive latency p50 / p99 ms",
                "naive CPU %",
                "naive peak RSS MB",
            ],
            naive_rows,
        )
        + [
            "Where a frame's time goes: each stage alone (p50 ms, `bench.probe stages`), and CPU time per result "
            "of each process in the runs above (ms; less sensitive to the machine's load than fps):",
            "",
        ]
        + _table(
            [
                "bundle, threads",
                "decode VGA MJPG",
                "preprocess",
                "model",
                "result JSON",
                "CPU/frame interpreter",
                "CPU/frame station",
                "CPU/frame naive",
            ],
            stage_rows,
        )
    )


def outbox_section(doc: dict) -> List[str]:
    res = doc["results"]
    alone = [
        [
            a["mode"],
            a["results"],
            _f(a["results_per_s"], 0),
            a["syncs"],
            _f(a["power_cut_window_ms"]),
            _f(a["max_sync_ms"]),
            a["load_average"]["start"][0],
        ]
        for a in res.get("alone", [])
    ]
    rows = [
        [
            t["synchronous"],
            t["results"],
            _f(t["add_per_s"], 0),
            _f(t["acked_per_s"], 0),
            _f(t.get("power_cut_window_ms")),
            f"{t['received_unique']}/{t['sent']}",
            t["duplicates"],
        ]
        for t in res["throughput"]
    ]
    paced = [
        [
            p["publish"],
            _f(p["rate_per_s"], 0),
            " / ".join(_f(p["submit_to_publish_ms"][k]) for k in ("p50", "p90", "p99")),
            " / ".join(_f(p["submit_to_subscriber_ms"][k]) for k in ("p50", "p90", "p99")),
            _f(p["power_cut_window_ms"]),
            f"{p['received_unique']}/{p['sent']}",
        ]
        for p in res.get("paced", [])
    ]
    o = res["outage"]
    return (
        ["### 4. Outbox and MQTT (QoS 1, 20 in flight)", "", _ctx(doc), ""]
        + _table(
            [
                "outbox alone",
                "results",
                "results/s written, acknowledged, synced",
                "syncs",
                "power-cut window ms",
                "longest sync ms",
                "load average",
            ],
            alone,
        )
        + _table(
            [
                "to Mosquitto: synchronous",
                "results",
                "submitted/s",
                "through to PUBACK/s",
                "power-cut window ms",
                "received (by id)",
                "duplicates",
            ],
            rows,
        )
        + _table(
            [
                "paced: publish",
                "results/s",
                "submit to publish p50 / p90 / p99 ms",
                "submit to subscriber p50 / p90 / p99 ms",
                "power-cut window ms",
                "received (by id)",
            ],
            paced,
        )
        + _table(
            [
                "outage: queued",
                "first result after restart s",
                "drain results/s",
                "restart to outbox empty s",
                "received (by id)",
                "duplicates",
            ],
            [
                [
                    o["queued"],
                    o["reconnect_s"],
                    _f(o["drain_per_s"], 0),
                    o["restart_to_outbox_empty_s"],
                    f"{o['received_unique']}/{o['sent']}",
                    o["duplicates"],
                ]
            ],
        )
    )


def coldstart_section(doc: dict) -> List[str]:
    res = doc["results"]
    cs = res["cold_start"]
    rows = [
        [
            b["bundle"],
            _f(b["edge_imports_ms"], 0),
            _f(b["bundle_load"]["p50"]),
            _f(b["interpreter_create"]["p50"]),
            _f(b["first_inference"]["p50"]),
        ]
        for b in res["bundle_load"]
    ]
    return [
        "### 5. Cold start",
        "",
        _ctx(doc),
        "",
        f"Process start to first result at the subscriber ({cs['bundle']}, {cs['to_first_result_s']['n']} starts): "
        f"median **{cs['to_first_result_s']['p50']:.2f} s** (first start {cs['first_run_s']:.2f} s, "
        f"max {max(r['to_first_result_s'] for r in cs['runs']):.2f} s); to the first frame captured "
        f"{cs['to_first_capture_s']['p50']:.2f} s.",
        "",
    ] + _table(
        ["bundle", "edge imports ms", "bundle load + verify ms (p50)", "interpreter create ms", "first inference ms"],
        rows,
    )


def training_section(doc: dict) -> List[str]:
    rows = [
        [
            r["arch"],
            r["size"],
            _f(r["step_s"]["p50"], 2),
            _f(r["images_per_s"]),
            _f(r["seconds_per_epoch"], 0),
            _f(r["first_step_s"], 0),
        ]
        for r in doc["results"]["rows"]
    ]
    return [f"### 6. Training (batch 32, {doc['context']['timed_steps']} timed steps)", "", _ctx(doc), ""] + _table(
        [
            "backbone",
            "input",
            "s/step (p50)",
            "images/s",
            "s/epoch (magnetic tile train split)",
            "first step (tracing) s",
        ],
        rows,
    )


SECTIONS = [
    ("interpreter", interpreter_section),
    ("pipeline", pipeline_section),
    ("outbox", outbox_section),
    ("coldstart", coldstart_section),
    ("training", training_section),
]


def render() -> str:
    out = [BEGIN, ""]
    for mode in ("full", "quick"):
        folder = RESULTS / mode
        docs = [(name, _load(folder, name)) for name, _ in SECTIONS]
        if not any(doc for _, doc in docs):
            continue
        out += [f"## Results: {mode} run (`bench/results/{mode}/`)", ""]
        for (name, section), (_, doc) in zip(SECTIONS, docs):
            out += section(doc) if doc else [f"_{name}: no result file_", ""]
    return "\n".join(out + [END])


def update_readme(path: Path = README) -> Path:
    text = path.read_text() if path.is_file() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + render() + tail)
    return path
