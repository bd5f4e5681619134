"""Overload: beats offered far faster than the daemon scores them, through a real Mosquitto.

Run: ECGWATCH_DATA_DIR=../shared/data python -m benchmarks.overload [--seconds 25] [--factor 12]

It first measures the daemon's capacity (a saturated burst), then offers ``factor`` times that rate for
``seconds``, sampling every half second what the daemon holds (received, not yet acknowledged) and its
resident memory. Then it waits for every beat's score and counts the ones that never came (must be 0).
Before the intake gate, at ~12x for 25 s the daemon held ~34,700 beats with a 1,024 queue and grew to 593 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from pathlib import Path

from benchmarks._common import report
from benchmarks.serve_throughput import PUBLISHERS, feed, payload_lines, scrape_all, serving_daemon
from ecgwatch.datasets import load_ecg5000
from ecgwatch.demo.brokers import mosquitto


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def capacity(metrics_port: int, seconds: float = 5.0) -> float:
    """Beats/s the daemon scores while saturated: the scored counter's slope once its queue is full."""
    first = scrape_all(metrics_port)["ecgwatch_beats_scored_total"]
    time.sleep(seconds)
    return (scrape_all(metrics_port)["ecgwatch_beats_scored_total"] - first) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=25.0, help="how long the overload lasts")
    parser.add_argument("--factor", type=float, default=12.0, help="offered rate / measured capacity")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--queue-size", type=int, default=1024)
    args = parser.parse_args()
    beats = load_ecg5000().x
    gate = {"ECGWATCH_BATCH__QUEUE_SIZE": str(args.queue_size)}
    # No broker-side queue limit: the backlog is the broker's to keep (Mosquitto's default drops beyond 1,000;
    # size max_queued_messages for the longest overload to ride out), and every beat must come back scored.
    with mosquitto("/usr/sbin/mosquitto", max_queued=0) as broker, serving_daemon(broker, args, gate) as daemon:
        warm = payload_lines(beats, 4000)
        publishers = _publishers(broker.host, broker.port)
        threading.Thread(target=feed, args=(publishers, warm, None), daemon=True).start()
        time.sleep(3.0)  # the queue fills
        rate = capacity(daemon.metrics_port) * args.factor
        total = int(rate * args.seconds)
        lines = payload_lines(beats, total + len(warm))[len(warm) :]
        lines = [json.dumps({**json.loads(line), "seq": len(warm) + i}).encode() for i, line in enumerate(lines)]
        collector = subprocess.Popen(
            ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", "ecg/+/score", "-F", "%p"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        feeder = threading.Thread(target=feed, args=(_publishers(broker.host, broker.port), lines, rate))
        feeder.start()
        peak_held, peak_rss, samples = 0.0, 0.0, []
        started = time.monotonic()
        while feeder.is_alive() or time.monotonic() - started < args.seconds:
            m = scrape_all(daemon.metrics_port)
            peak_held = max(peak_held, m["ecgwatch_beats_held"])
            peak_rss = max(peak_rss, rss_mb(daemon.process.pid))
            samples.append((time.monotonic() - started, m["ecgwatch_beats_held"], rss_mb(daemon.process.pid)))
            time.sleep(0.5)
        expected = set(range(len(warm), len(warm) + len(lines)))
        seen: set[int] = set()
        arrived = threading.Thread(target=_read_seqs, args=(collector, seen), daemon=True)
        arrived.start()
        deadline = time.monotonic() + 60 + len(lines) / max(rate / args.factor, 1.0) * 2
        while not expected <= seen and time.monotonic() < deadline:
            time.sleep(0.5)
        collector.kill()
    report("capacity (saturated)", rate / args.factor, "beats/s")
    report("offered rate", rate, f"beats/s ({args.factor:g}x for {args.seconds:g} s)")
    report("queue_size", args.queue_size, "beats")
    report("peak beats held (ecgwatch_beats_held)", peak_held, "beats")
    report("peak resident memory", peak_rss, "MB")
    report("resident memory, first and last sample", samples[0][2], f"MB -> {samples[-1][2]:.0f} MB")
    report("beats offered during the overload", len(expected), "beats")
    report("beats never scored (lost)", len(expected - seen), "beats")


def _read_seqs(collector: subprocess.Popen[str], seen: set[int]) -> None:
    assert collector.stdout is not None
    for line in collector.stdout:
        seen.add(json.loads(line)["seq"])


def _publishers(host: str, port: int) -> list[subprocess.Popen[bytes]]:
    command = ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-M", "1000", "-l"]
    return [subprocess.Popen([*command, "-t", f"ecg/watch-{k}/beat"], stdin=subprocess.PIPE) for k in range(PUBLISHERS)]


if __name__ == "__main__":
    main()
