"""Strips vs beats end to end through Mosquitto: the same beats, cut by the daemon or sent pre-cut.

Run: ECGWATCH_DATA_DIR=../shared/data python -m benchmarks.strip_throughput [--seconds 300] [--rounds 3]

Four watches each stream a MIT-BIH record as 10 s strips as fast as the broker takes them; the daemon
segments, scores and publishes one event per beat. In the same run, in alternating rounds, the beats those
strips contain (cut offline by the same segmentation) are sent as beat messages. Both rates count score
events from the first publish to the last score; the ratio (strip path / beat path) is the median of the
rounds' ratios. Also: the daemon's own segmentation time per beat and per strip.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from benchmarks._common import report
from benchmarks.serve_throughput import PUBLISHERS, blast, scrape_all, serving_daemon
from ecgwatch.datasets import data_dir
from ecgwatch.datasets.mitbih import load_record
from ecgwatch.demo.brokers import mosquitto
from ecgwatch.detection.segmentation import Strip, Window, push

RECORDS = ("100", "106", "114", "121")  # one per watch
STRIP_S = 10.0


def workload(seconds: float) -> tuple[list[bytes], list[bytes]]:
    """Strip lines (line i: watch i mod 4's next strip) and the beat lines of the same beats."""
    folder = data_dir("mitbih")
    per_watch: list[list[bytes]] = []
    beat_lines: list[bytes] = []
    for name in RECORDS[:PUBLISHERS]:
        record = load_record(folder, name)
        size = round(STRIP_S * record.fs)
        track, strips = None, []
        for seq, start in enumerate(range(0, round(seconds * record.fs), size)):
            samples = record.signal[start : start + size].round(3)  # exactly what is sent
            result = push(track, Strip(seq, 1.8e9 + start / record.fs, record.fs, samples), Window())
            track = result.track
            body = {"seq": seq, "ts": 1.8e9 + start / record.fs, "fs": record.fs, "samples": samples.tolist()}
            strips.append(json.dumps(body).encode())
            for beat in result.beats:
                if beat.window is not None:
                    window = np.asarray(beat.window).round(4).tolist()
                    beat_lines.append(json.dumps({"seq": len(beat_lines), "samples": window}).encode())
        per_watch.append(strips)
    strip_lines = [watch[i] for i in range(min(map(len, per_watch))) for watch in per_watch]
    return strip_lines, beat_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="seconds of signal per watch and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    strip_lines, beat_lines = workload(args.seconds)
    rounds = []
    with mosquitto() as broker, serving_daemon(broker, args) as daemon:
        for n in range(args.rounds):
            before = scrape_all(daemon.metrics_port)
            # New watches every round (a repeated seq would be a duplicate); every beat the strips complete
            # (a watch's last beat waits for a next strip that never comes, as offline).
            watches = f"round{n}"
            strips = blast(
                broker, strip_lines, daemon.process.pid, 900, kind="strip", scores=len(beat_lines), device=watches
            )
            after = scrape_all(daemon.metrics_port)
            found = after["ecgwatch_beats_detected_total"] - before["ecgwatch_beats_detected_total"]
            beats = blast(broker, beat_lines, daemon.process.pid, 900)
            rounds.append(
                {
                    "strip_rate": strips["rate"],
                    "beat_rate": beats["rate"],
                    "ratio": strips["rate"] / beats["rate"],
                    "found": found,
                    "segmentation_s": after["ecgwatch_segmentation_seconds_sum"]
                    - before["ecgwatch_segmentation_seconds_sum"],
                    "strips": len(strip_lines),
                }
            )
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"{PUBLISHERS} watches x {args.seconds:g} s of MIT-BIH ({', '.join(RECORDS)}), {args.rounds} rounds")
    report("strip path end to end, median", median["strip_rate"], "beats/s")
    report("  strips per second", median["strip_rate"] / (median["found"] / median["strips"]), "strips/s")
    report("beat path end to end (the same beats, pre-cut), median", median["beat_rate"], "beats/s")
    report("strip path / beat path, median of rounds", median["ratio"], "x")
    print(f"{'  per round, sorted':52s} {' '.join(f'{r:.3f}' for r in sorted(r['ratio'] for r in rounds))}")
    report("segmentation per beat (in the daemon)", median["segmentation_s"] / median["found"] * 1e6, "us")
    report("segmentation per 10 s strip", median["segmentation_s"] / median["strips"] * 1e3, "ms")
    report("beats found per round", median["found"], "beats")


if __name__ == "__main__":
    main()
