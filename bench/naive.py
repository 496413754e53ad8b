"""Worker process: the loop a user writes from tutorials, for comparison with the station runtime.

Read a frame, preprocess, invoke, publish the result with paho at QoS 1 and wait for the broker's
acknowledgement, repeat; one thread, nothing overlapped, nothing stored on disk (a result is lost if
the broker is away). It uses the product's preprocessing and interpreter so that the only difference
from the station is the structure of the loop.

  python -m bench.naive BUNDLE VIDEO --host 127.0.0.1 --port 1883 --topic bench/line/naive/result --seconds 10
Prints one JSON object (frames, seconds) on stdout when done.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.naive", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle")
    parser.add_argument("video")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)

    import cv2
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from inspector.bundle import Bundle
    from inspector.inference import Classifier

    clf = Classifier(Bundle.load(args.bundle), threads=args.threads)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"naive-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.connect(args.host, args.port)
    client.loop_start()
    cap = cv2.VideoCapture(args.video)
    frames = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        ok, frame = cap.read()
        if not ok:  # end of the file: start again
            cap.release()
            cap = cv2.VideoCapture(args.video)
            continue
        captured = time.time()
        c = clf.classify(frame, order="bgr")
        payload = json.dumps(
            {
                "id": uuid.uuid4().hex,
                "seq": frames + 1,
                "verdict": c.verdict.value,
                "defect_score": c.defect_score,
                "top_class": c.top_class,
                "scores": c.scores,
                "capture_ts": captured,
                "inference_ms": c.inference_ms,
            }
        )
        client.publish(args.topic, payload, qos=1).wait_for_publish()
        frames += 1
    elapsed = time.monotonic() - start
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"frames": frames, "seconds": round(elapsed, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
