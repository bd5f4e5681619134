"""``ecgwatch inspect --device ID``: a picture of one device's next strip with its beats marked.

Listens on the broker for the device's next strip and the score events of its beats (as any subscriber
could), then draws the strip with each beat's R peak marked normal, anomalous or unreadable, and the
episodes that were open. For the person on call: what did the daemon see?
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from ecgwatch.serve.config import MqttSettings
from ecgwatch.serve.mqtt_session import secure

QUIET_S = 3.0  # no new beat of the strip for this long: it is complete as far as we will see


@dataclass
class Capture:
    strip: dict[str, Any] | None = None
    beats: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    last_beat: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, topic: str, body: dict[str, Any]) -> None:
        with self.lock:
            if topic.endswith("/strip") and self.strip is None:
                self.strip = body
            elif topic.endswith("/score") and self.strip is not None and body.get("strip_seq") == self.strip["seq"]:
                self.beats.append(body)
                self.last_beat = time.monotonic()
            elif topic.endswith("/episode"):
                self.episodes.append(body)


def capture(settings: MqttSettings, device: str, timeout: float) -> Capture:
    seen = Capture()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ecgwatch-inspect-{int(time.time() * 1e3)}")
    secure(client, settings)
    topics = [f"ecg/{device}/strip", settings.score_topic.format(device=device)]
    topics.append(settings.episode_topic.format(device=device))
    client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
    client.on_subscribe = lambda *_: print(f"waiting for {device}'s next strip", file=sys.stderr, flush=True)
    client.on_message = lambda _c, _u, m: seen.take(m.topic, json.loads(m.payload))
    client.connect(settings.host, settings.port)
    client.loop_start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with seen.lock:
                done = seen.beats and time.monotonic() - seen.last_beat > QUIET_S
            if done:
                break
            time.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    if seen.strip is None:
        raise RuntimeError(f"no strip from {device} within {timeout:g}s")
    return seen


def draw(seen: Capture, device: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert seen.strip is not None
    samples = np.asarray(seen.strip["samples"], dtype=float)
    fs = float(seen.strip["fs"])
    t = np.arange(len(samples)) / fs
    fig, ax = plt.subplots(figsize=(14, 4))
    ax.plot(t, samples - np.median(samples), color="0.3", linewidth=0.7)
    styles = {"normal": ("tab:green", "normal"), "anomaly": ("tab:red", "anomalous"), "other": ("0.6", "unreadable")}
    shown: set[str] = set()
    for beat in seen.beats:
        style = "other" if beat["quality"] != "ok" else ("anomaly" if beat["anomaly"] else "normal")
        colour, label = styles[style]
        x = beat["sample"] / fs
        ax.axvline(x, color=colour, alpha=0.8, linewidth=1.5, label=None if style in shown else label)
        shown.add(style)
        if beat["quality"] != "ok":
            ax.annotate(beat["quality"], (x, ax.get_ylim()[1]), fontsize=7, color=colour, rotation=90, va="top")
    anomalous = sum(b["anomaly"] for b in seen.beats)
    unreadable = sum(b["quality"] != "ok" for b in seen.beats)
    opened = sorted({e["kind"] for e in seen.episodes if e["type"] != "end"})
    ax.set_title(
        f"{device}, strip {seen.strip['seq']}: {len(seen.beats)} beats, {anomalous} anomalous, {unreadable} unreadable"
        + (f"; episodes: {', '.join(opened)}" if opened else "")
    )
    ax.set_xlabel("seconds into the strip")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
