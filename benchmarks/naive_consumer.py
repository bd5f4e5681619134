"""The naive baseline for ``serve_throughput``: one message at a time in ``on_message``, batch-1 scoring.

It runs in its own process (``python -m benchmarks.naive_consumer``) so that, like the daemon, it has a
whole interpreter and GIL to itself; like the daemon it lives through several rounds and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import torch

from ecgwatch import artifact
from ecgwatch.scorer import Scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scorer = Scorer(artifact.load(artifact.REFERENCE_MODEL_DIR), torch.device("cpu"))

    def on_message(client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        received = time.time()
        body = json.loads(message.payload)
        score = float(scorer.score(np.asarray([body["samples"]], dtype=np.float64)).scores[0])
        device = message.topic.split("/")[1]
        event = {"seq": body["seq"], "score": score, "received_at": received}
        client.publish(f"ecg/{device}/score", json.dumps(event), qos=1)

    def on_connect(client: mqtt.Client, *_a: Any) -> None:
        torch.set_num_threads(args.threads)  # in the thread that runs the model, as the daemon does
        client.subscribe("ecg/+/beat", qos=1)
        print("subscribed", flush=True)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-naive-{args.port}")
    client.on_message, client.on_connect = on_message, on_connect
    client.connect(args.host, args.port)
    client.loop_forever()


if __name__ == "__main__":
    main()
